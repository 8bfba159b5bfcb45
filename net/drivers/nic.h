// A network interface card as the net thread sees it: frames in, frames out, counters.
// Two drivers: virtio-net (legacy/transitional interface, I/O BAR) and e1000. Both keep bounded
// rings allocated once at start-up from the platform's DMA pool; a frame that does not fit is
// dropped and counted, never written past a buffer.
//
// Concurrency: start() runs once, before interrupts are enabled for the device. After that the
// interrupt handler only acknowledges the device and calls the wake-up given to start() (which
// signals the net thread's event); receive() and transmit() run only in the net thread.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "drivers/pci.h"

namespace net {

enum class NicKind : uint8_t { kNone, kVirtio, kE1000 };
const char* nic_kind_name(NicKind kind);

constexpr size_t kMacBytes = 6;
constexpr size_t kFrameBytesMax = 1514;     // Ethernet header + 1500 MTU, no FCS, no VLAN tag
constexpr size_t kBufferBytes = 2048;       // one DMA buffer per ring slot
constexpr size_t kRxRingSlots = 128;        // receive buffers posted to the device
constexpr size_t kTxRingSlots = 128;        // frames queued for transmission at most

struct NicCounters {
    uint64_t rx_frames, rx_bytes, rx_drops, rx_errors;
    uint64_t tx_frames, tx_bytes, tx_drops, tx_errors;
    uint64_t interrupts;
    uint64_t rx_device_missed;  // frames the device itself lost (e1000: MPC register)
    uint64_t kicks;             // virtio: notify writes (exits into QEMU), RX and TX
};

using RxSink = void (*)(void* ctx, const uint8_t* frame, size_t length);
using WakeFn = void (*)(void* ctx);

struct VirtioState {
    uint16_t io_base;
    uint16_t rx_size, tx_size;         // queue sizes the device reports
    void* rx_ring;                     // vring memory (desc, avail, used)
    void* tx_ring;
    uint8_t* rx_buffers;               // kRxRingSlots x kBufferBytes
    uint8_t* tx_buffers;               // kTxRingSlots x kBufferBytes
    uint16_t rx_last_used;
    uint16_t tx_last_used;
    uint16_t tx_free[kTxRingSlots];    // free TX slots (stack)
    uint16_t tx_free_count;
    uint16_t tx_unkicked;              // frames published while kicks are held back
    bool tx_hold_kicks;                // nic_tx_hold_kicks: kick at nic_tx_flush, not per frame
    bool tx_kicked_in_hold;            // the held pass's first frame was kicked
};

struct E1000State {
    volatile uint32_t* regs;
    void* rx_desc;
    void* tx_desc;
    uint8_t* rx_buffers;
    uint8_t* tx_buffers;
    uint32_t rx_next;                  // next RX descriptor the device may have filled
    uint32_t tx_tail;                  // next TX descriptor we fill
    uint32_t tx_clean;                 // oldest TX descriptor not yet seen done
};

struct Nic {
    NicKind kind;
    PciDevice pci;
    uint8_t mac[kMacBytes];
    NicCounters counters;
    WakeFn wake;
    void* wake_ctx;
    VirtioState virtio;
    E1000State e1000;
};

// Scans PCI for the first supported NIC (virtio-net 1af4:1000, then e1000 8086:100e), starts it
// with the given MAC (nullptr: keep the device's own) and hooks its interrupt line to wake.
// Returns nullptr and prints why when no NIC is found or start-up fails.
Nic* nic_probe_and_start(const uint8_t* mac, WakeFn wake, void* wake_ctx);

// Net thread only. Delivers at most budget received frames to sink; returns how many it
// delivered or dropped (0: the ring is empty).
size_t nic_receive(Nic* nic, RxSink sink, void* ctx, size_t budget);
// Net thread only. Copies the frame into a TX slot. false (and tx_drops counted) when the frame
// is too large or every slot is still owned by the device.
bool nic_transmit(Nic* nic, const void* frame, size_t length);
// The same, but fill writes the length bytes of the frame straight into the slot's DMA buffer
// (lwIP's pbuf chain is copied once, from the chain into the device's buffer).
using TxFill = void (*)(void* ctx, uint8_t* dst, size_t length);
bool nic_transmit_with(Nic* nic, size_t length, TxFill fill, void* ctx);
// Refreshes counters the device keeps itself (e1000's missed-packet count).
void nic_update_counters(Nic* nic);
// Net thread only. While held, frames are published to the device without the per-frame kick
// (virtio: the notify write, an exit into QEMU costing 7-30 us of the vCPU's time under TCG);
// nic_tx_flush kicks once for the rest (and clears the hold). The pass's first frame is kicked
// at once (the device starts on it meanwhile), then one kick per kTxKickBatch frames, and
// before the ring fills: a burst of N frames costs about 1 + N / kTxKickBatch kicks, not N.
// e1000: no effect (its tail register write is per frame).
constexpr uint16_t kTxKickBatch = 8;
void nic_tx_hold_kicks(Nic* nic);
void nic_tx_flush(Nic* nic);

// The kernel's memcpy (eight bytes per rep step under QEMU's TCG, not one).
inline void copy_bytes(void* dst, const void* src, size_t n) { __builtin_memcpy(dst, src, n); }

// Driver entry points (drivers/virtio_net.cc, drivers/e1000.cc).
bool virtio_net_start(Nic* nic, const uint8_t* mac);
// The interrupt: *_irq_quiet acknowledges it at the device (before the PIC's end of interrupt)
// and says whether it was ours; *_irq then wakes the net thread.
bool virtio_net_irq_quiet(void* nic);
void virtio_net_irq(void* nic);
size_t virtio_net_receive(Nic* nic, RxSink sink, void* ctx, size_t budget);
bool virtio_net_transmit(Nic* nic, size_t length, TxFill fill, void* ctx);
void virtio_net_tx_flush(Nic* nic);
bool e1000_start(Nic* nic, const uint8_t* mac);
bool e1000_irq_quiet(void* nic);
void e1000_irq(void* nic);
size_t e1000_receive(Nic* nic, RxSink sink, void* ctx, size_t budget);
bool e1000_transmit(Nic* nic, size_t length, TxFill fill, void* ctx);
void e1000_update_counters(Nic* nic);

}  // namespace net
