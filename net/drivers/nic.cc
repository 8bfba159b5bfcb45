#include "drivers/nic.h"

#include "arch/x86_64/platform.h"
#include "panic.h"

namespace net {
namespace {

constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint16_t kVirtioNetTransitional = 0x1000;
constexpr uint16_t kIntelVendor = 0x8086;
constexpr uint16_t kE1000_82540em = 0x100e;

// One NIC per node; a static object so that nothing is allocated and no constructor runs.
Nic g_nic;

}  // namespace

const char* nic_kind_name(NicKind kind) {
    switch (kind) {
        case NicKind::kVirtio: return "virtio-net";
        case NicKind::kE1000: return "e1000";
        case NicKind::kNone: break;
    }
    return "none";
}

Nic* nic_probe_and_start(const uint8_t* mac, WakeFn wake, void* wake_ctx) {
    Nic* nic = &g_nic;
    nic->wake = wake;
    nic->wake_ctx = wake_ctx;
    bool started = false;
    void (*irq)(void*) = nullptr;
    bool (*irq_quiet)(void*) = nullptr;
    if (pci_find(kVirtioVendor, kVirtioNetTransitional, &nic->pci)) {
        nic->kind = NicKind::kVirtio;
        irq = virtio_net_irq;
        irq_quiet = virtio_net_irq_quiet;
        started = virtio_net_start(nic, mac);
    } else if (pci_find(kIntelVendor, kE1000_82540em, &nic->pci)) {
        nic->kind = NicKind::kE1000;
        irq = e1000_irq;
        irq_quiet = e1000_irq_quiet;
        started = e1000_start(nic, mac);
    } else {
        kernel::print("net: no supported NIC found on PCI (virtio-net 1af4:1000, e1000 8086:100e)\n");
        return nullptr;
    }
    if (!started) {
        kernel::print("net: %s start-up failed\n", nic_kind_name(nic->kind));
        return nullptr;
    }
    if (!x86::irq_register(nic->pci.irq_line, irq, nic, irq_quiet)) {
        kernel::print("net: cannot register IRQ %u for %s\n", nic->pci.irq_line,
                      nic_kind_name(nic->kind));
        return nullptr;
    }
    kernel::print("net: %s at pci %u:%u.%u irq %u mac %02x:%02x:%02x:%02x:%02x:%02x, rings rx %u tx %u\n",
                  nic_kind_name(nic->kind), nic->pci.bus, nic->pci.dev, nic->pci.fn,
                  nic->pci.irq_line, nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3],
                  nic->mac[4], nic->mac[5], static_cast<unsigned>(kRxRingSlots),
                  static_cast<unsigned>(kTxRingSlots));
    return nic;
}

size_t nic_receive(Nic* nic, RxSink sink, void* ctx, size_t budget) {
    return nic->kind == NicKind::kVirtio ? virtio_net_receive(nic, sink, ctx, budget)
                                         : e1000_receive(nic, sink, ctx, budget);
}

bool nic_transmit_with(Nic* nic, size_t length, TxFill fill, void* ctx) {
    if (length > kFrameBytesMax) {
        ++nic->counters.tx_drops;
        return false;
    }
    return nic->kind == NicKind::kVirtio ? virtio_net_transmit(nic, length, fill, ctx)
                                         : e1000_transmit(nic, length, fill, ctx);
}

bool nic_transmit(Nic* nic, const void* frame, size_t length) {
    auto copy = [](void* src, uint8_t* dst, size_t n) { copy_bytes(dst, src, n); };
    return nic_transmit_with(nic, length, copy, const_cast<void*>(frame));
}

void nic_tx_hold_kicks(Nic* nic) {
    if (nic->kind == NicKind::kVirtio) nic->virtio.tx_hold_kicks = true;
}

void nic_tx_flush(Nic* nic) {
    if (nic->kind == NicKind::kVirtio) virtio_net_tx_flush(nic);
}

void nic_update_counters(Nic* nic) {
    if (nic->kind == NicKind::kE1000) e1000_update_counters(nic);
}

}  // namespace net
