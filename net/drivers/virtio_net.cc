// virtio-net, legacy (transitional) interface through I/O BAR 0, as QEMU's virtio-net-pci offers
// by default (1af4:1000). Split virtqueues: queue 0 receives, queue 1 transmits. No mergeable
// RX buffers: every RX buffer holds the 10-byte virtio-net header plus a whole frame.
#include "drivers/nic.h"

#include "arch/x86_64/platform.h"
#include "panic.h"

namespace net {
namespace {

// Legacy register offsets from the I/O base (no MSI-X: device config starts at 0x14).
constexpr uint16_t kRegDeviceFeatures = 0x00;
constexpr uint16_t kRegGuestFeatures = 0x04;
constexpr uint16_t kRegQueueAddress = 0x08;
constexpr uint16_t kRegQueueSize = 0x0c;
constexpr uint16_t kRegQueueSelect = 0x0e;
constexpr uint16_t kRegQueueNotify = 0x10;
constexpr uint16_t kRegStatus = 0x12;
constexpr uint16_t kRegIsr = 0x13;
constexpr uint16_t kRegConfigMac = 0x14;

constexpr uint8_t kStatusAcknowledge = 1;
constexpr uint8_t kStatusDriver = 2;
constexpr uint8_t kStatusDriverOk = 4;
constexpr uint8_t kStatusFailed = 128;
constexpr uint32_t kFeatureMac = 1u << 5;

constexpr uint16_t kQueueRx = 0;
constexpr uint16_t kQueueTx = 1;
constexpr uint16_t kDescFlagWrite = 2;
constexpr uint16_t kAvailFlagNoInterrupt = 1;
constexpr uint16_t kUsedFlagNoNotify = 1;   // the device needs no kick for this queue now
constexpr size_t kVringAlign = 4096;
constexpr size_t kNetHeaderBytes = 10;  // struct virtio_net_hdr without num_buffers
constexpr uint16_t kQueueSizeMax = 1024;

struct VringDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
struct VringUsedElem {
    uint32_t id;
    uint32_t len;
};

size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }
size_t vring_bytes(uint16_t n) {
    return align_up(16u * n + 6 + 2u * n, kVringAlign) + align_up(6 + 8u * n, kVringAlign);
}

// Views into one vring's memory.
VringDesc* desc(void* ring) { return static_cast<VringDesc*>(ring); }
volatile uint16_t* avail_flags(void* ring, uint16_t n) {
    return reinterpret_cast<volatile uint16_t*>(static_cast<uint8_t*>(ring) + 16u * n);
}
volatile uint16_t* avail_idx(void* ring, uint16_t n) { return avail_flags(ring, n) + 1; }
volatile uint16_t* avail_ring(void* ring, uint16_t n) { return avail_flags(ring, n) + 2; }
uint8_t* used_base(void* ring, uint16_t n) {
    return static_cast<uint8_t*>(ring) + align_up(16u * n + 6 + 2u * n, kVringAlign);
}
volatile uint16_t* used_flags(void* ring, uint16_t n) {
    return reinterpret_cast<volatile uint16_t*>(used_base(ring, n));
}
volatile uint16_t* used_idx(void* ring, uint16_t n) {
    return reinterpret_cast<volatile uint16_t*>(used_base(ring, n) + 2);
}
volatile VringUsedElem* used_ring(void* ring, uint16_t n) {
    return reinterpret_cast<volatile VringUsedElem*>(used_base(ring, n) + 4);
}

inline void barrier() { asm volatile("mfence" ::: "memory"); }

// A kick (the notify register write) is the costliest thing a frame does under TCG (7-30 us
// measured, the I/O exit into QEMU): skip it while the device says it needs none
// (VRING_USED_F_NO_NOTIFY: QEMU sets it on the RX queue while it has buffers, and on the TX
// queue while its TX bottom half is pending and will see the new frame anyway; it clears the
// flag and then looks at the ring once more, so a frame published before our read of the flag
// is never missed). Call after the avail index write and a barrier.
void kick_if_needed(Nic* nic, VirtioState& v, void* ring, uint16_t n, uint16_t queue) {
    if (*used_flags(ring, n) & kUsedFlagNoNotify) return;
    ++nic->counters.kicks;
    x86::outw(v.io_base + kRegQueueNotify, queue);
}

// Selects a queue, allocates its ring from the DMA pool and tells the device where it is.
bool setup_queue(VirtioState& v, uint16_t queue, uint16_t* size, void** ring) {
    x86::outw(v.io_base + kRegQueueSelect, queue);
    uint16_t n = x86::inw(v.io_base + kRegQueueSize);
    if (n == 0 || n > kQueueSizeMax || (n & (n - 1))) {
        kernel::print("virtio-net: queue %u has unusable size %u\n", queue, n);
        return false;
    }
    void* mem = x86::dma_alloc(vring_bytes(n), kVringAlign);
    if (!mem) {
        kernel::print("virtio-net: DMA pool exhausted for queue %u\n", queue);
        return false;
    }
    *size = n;
    *ring = mem;
    x86::outl(v.io_base + kRegQueueAddress, static_cast<uint32_t>(x86::virt_to_phys(mem) / kVringAlign));
    return true;
}

void post_rx(VirtioState& v, uint16_t slot) {
    uint16_t n = v.rx_size;
    uint16_t idx = *avail_idx(v.rx_ring, n);
    avail_ring(v.rx_ring, n)[idx % n] = slot;
    barrier();
    *avail_idx(v.rx_ring, n) = static_cast<uint16_t>(idx + 1);
}

// Takes back TX slots the device has finished with.
void reclaim_tx(VirtioState& v) {
    uint16_t n = v.tx_size;
    while (v.tx_last_used != *used_idx(v.tx_ring, n)) {
        barrier();
        uint32_t id = used_ring(v.tx_ring, n)[v.tx_last_used % n].id;
        if (id < kTxRingSlots && v.tx_free_count < kTxRingSlots) v.tx_free[v.tx_free_count++] = static_cast<uint16_t>(id);
        ++v.tx_last_used;
    }
}

}  // namespace

bool virtio_net_start(Nic* nic, const uint8_t* mac) {
    VirtioState& v = nic->virtio;
    v.io_base = pci_io_base(nic->pci, 0);
    if (!v.io_base) {
        kernel::print("virtio-net: BAR 0 is not an I/O BAR (modern-only device?)\n");
        return false;
    }
    pci_enable(nic->pci);
    x86::outb(v.io_base + kRegStatus, 0);  // reset
    x86::outb(v.io_base + kRegStatus, kStatusAcknowledge);
    x86::outb(v.io_base + kRegStatus, kStatusAcknowledge | kStatusDriver);
    uint32_t features = x86::inl(v.io_base + kRegDeviceFeatures);
    x86::outl(v.io_base + kRegGuestFeatures, features & kFeatureMac);

    if (!setup_queue(v, kQueueRx, &v.rx_size, &v.rx_ring) ||
        !setup_queue(v, kQueueTx, &v.tx_size, &v.tx_ring)) {
        x86::outb(v.io_base + kRegStatus, kStatusFailed);
        return false;
    }
    v.rx_buffers = static_cast<uint8_t*>(x86::dma_alloc(kRxRingSlots * kBufferBytes, 64));
    v.tx_buffers = static_cast<uint8_t*>(x86::dma_alloc(kTxRingSlots * kBufferBytes, 64));
    if (!v.rx_buffers || !v.tx_buffers || v.rx_size < kRxRingSlots || v.tx_size < kTxRingSlots) {
        kernel::print("virtio-net: no DMA memory for buffers, or queues smaller than the rings\n");
        x86::outb(v.io_base + kRegStatus, kStatusFailed);
        return false;
    }
    // The MAC: the command line's wins (written to the device, which legacy devices accept);
    // otherwise the device's own.
    for (size_t i = 0; i < kMacBytes; ++i) {
        if (mac) x86::outb(static_cast<uint16_t>(v.io_base + kRegConfigMac + i), mac[i]);
        nic->mac[i] = mac ? mac[i] : x86::inb(static_cast<uint16_t>(v.io_base + kRegConfigMac + i));
    }
    // RX: descriptor i owns buffer i for ever; all posted at once.
    for (uint16_t i = 0; i < kRxRingSlots; ++i) {
        VringDesc& d = desc(v.rx_ring)[i];
        d.addr = x86::virt_to_phys(v.rx_buffers + i * kBufferBytes);
        d.len = kBufferBytes;
        d.flags = kDescFlagWrite;
        d.next = 0;
        post_rx(v, i);
    }
    // TX: completions need no interrupt (slots are reclaimed when the next frame goes out).
    *avail_flags(v.tx_ring, v.tx_size) = kAvailFlagNoInterrupt;
    v.tx_free_count = 0;
    for (uint16_t i = kTxRingSlots; i > 0; --i) v.tx_free[v.tx_free_count++] = static_cast<uint16_t>(i - 1);
    x86::outb(v.io_base + kRegStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
    x86::outw(v.io_base + kRegQueueNotify, kQueueRx);
    return true;
}

bool virtio_net_irq_quiet(void* arg) {
    Nic* nic = static_cast<Nic*>(arg);
    // Reading the ISR acknowledges (and lowers) the level-triggered line; 0: not ours (shared).
    return x86::inb(nic->virtio.io_base + kRegIsr) & 1;
}

void virtio_net_irq(void* arg) {
    Nic* nic = static_cast<Nic*>(arg);
    ++nic->counters.interrupts;
    nic->wake(nic->wake_ctx);
}

size_t virtio_net_receive(Nic* nic, RxSink sink, void* ctx, size_t budget) {
    VirtioState& v = nic->virtio;
    uint16_t n = v.rx_size;
    size_t handled = 0;
    while (handled < budget && v.rx_last_used != *used_idx(v.rx_ring, n)) {
        barrier();
        volatile VringUsedElem& e = used_ring(v.rx_ring, n)[v.rx_last_used % n];
        uint32_t id = e.id;
        uint32_t len = e.len;
        ++v.rx_last_used;
        ++handled;
        if (id >= kRxRingSlots) {  // the device named a descriptor we never posted
            ++nic->counters.rx_errors;
            continue;
        }
        if (len <= kNetHeaderBytes || len - kNetHeaderBytes > kFrameBytesMax) {
            ++nic->counters.rx_drops;
        } else {
            size_t frame = len - kNetHeaderBytes;
            ++nic->counters.rx_frames;
            nic->counters.rx_bytes += frame;
            sink(ctx, v.rx_buffers + id * kBufferBytes + kNetHeaderBytes, frame);
        }
        post_rx(v, static_cast<uint16_t>(id));
    }
    if (handled) {
        barrier();
        kick_if_needed(nic, v, v.rx_ring, n, kQueueRx);
    }
    return handled;
}

void virtio_net_tx_flush(Nic* nic) {
    VirtioState& v = nic->virtio;
    v.tx_hold_kicks = false;
    v.tx_kicked_in_hold = false;
    if (!v.tx_unkicked) return;
    v.tx_unkicked = 0;
    barrier();
    kick_if_needed(nic, v, v.tx_ring, v.tx_size, kQueueTx);
}

bool virtio_net_transmit(Nic* nic, size_t length, TxFill fill, void* ctx) {
    VirtioState& v = nic->virtio;
    reclaim_tx(v);
    if (v.tx_free_count == 0 && v.tx_unkicked) {
        // Held frames fill the ring: let the device have them, then look again.
        v.tx_unkicked = 0;
        barrier();
        kick_if_needed(nic, v, v.tx_ring, v.tx_size, kQueueTx);
        reclaim_tx(v);
    }
    if (v.tx_free_count == 0) {
        ++nic->counters.tx_drops;
        return false;
    }
    uint16_t slot = v.tx_free[--v.tx_free_count];
    uint8_t* buf = v.tx_buffers + slot * kBufferBytes;
    for (size_t i = 0; i < kNetHeaderBytes; ++i) buf[i] = 0;
    fill(ctx, buf + kNetHeaderBytes, length);
    VringDesc& d = desc(v.tx_ring)[slot];
    d.addr = x86::virt_to_phys(buf);
    d.len = static_cast<uint32_t>(kNetHeaderBytes + length);
    d.flags = 0;
    d.next = 0;
    uint16_t n = v.tx_size;
    uint16_t idx = *avail_idx(v.tx_ring, n);
    avail_ring(v.tx_ring, n)[idx % n] = slot;
    barrier();
    *avail_idx(v.tx_ring, n) = static_cast<uint16_t>(idx + 1);
    // The first frame of a held pass is kicked at once (the device starts on it while we build
    // the next ones); then one kick per kTxKickBatch frames, and the rest at the flush.
    if (v.tx_hold_kicks && v.tx_kicked_in_hold && ++v.tx_unkicked < kTxKickBatch) {
        ++nic->counters.tx_frames;
        nic->counters.tx_bytes += length;
        return true;  // kicked at nic_tx_flush
    }
    v.tx_unkicked = 0;
    v.tx_kicked_in_hold = v.tx_hold_kicks;
    barrier();
    kick_if_needed(nic, v, v.tx_ring, n, kQueueTx);
    ++nic->counters.tx_frames;
    nic->counters.tx_bytes += length;
    return true;
}

}  // namespace net
