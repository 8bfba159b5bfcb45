// Intel 82540EM (e1000, 8086:100e), QEMU's default x86 NIC: memory-mapped registers through
// BAR 0, legacy descriptor rings, one 2 KiB buffer per descriptor.
#include "drivers/nic.h"

#include "arch/x86_64/platform.h"
#include "panic.h"
#include "thread.h"

namespace net {
namespace {

constexpr uint32_t kRegCtrl = 0x0000;
constexpr uint32_t kRegStatus = 0x0008;
constexpr uint32_t kRegIcr = 0x00c0;
constexpr uint32_t kRegIms = 0x00d0;
constexpr uint32_t kRegImc = 0x00d8;
constexpr uint32_t kRegRctl = 0x0100;
constexpr uint32_t kRegTctl = 0x0400;
constexpr uint32_t kRegTipg = 0x0410;
constexpr uint32_t kRegRdbal = 0x2800;
constexpr uint32_t kRegRdbah = 0x2804;
constexpr uint32_t kRegRdlen = 0x2808;
constexpr uint32_t kRegRdh = 0x2810;
constexpr uint32_t kRegRdt = 0x2818;
constexpr uint32_t kRegRdtr = 0x2820;
constexpr uint32_t kRegTdbal = 0x3800;
constexpr uint32_t kRegTdbah = 0x3804;
constexpr uint32_t kRegTdlen = 0x3808;
constexpr uint32_t kRegTdh = 0x3810;
constexpr uint32_t kRegTdt = 0x3818;
constexpr uint32_t kRegMpc = 0x4010;   // missed packets (no RX descriptor free); clears on read
constexpr uint32_t kRegMta = 0x5200;
constexpr uint32_t kRegRal0 = 0x5400;
constexpr uint32_t kRegRah0 = 0x5404;
constexpr unsigned kMtaEntries = 128;

constexpr uint32_t kCtrlSlu = 1u << 6;
constexpr uint32_t kCtrlAsde = 1u << 5;
constexpr uint32_t kCtrlRst = 1u << 26;
constexpr uint32_t kRctlEn = 1u << 1;
constexpr uint32_t kRctlBam = 1u << 15;
constexpr uint32_t kRctlSecrc = 1u << 26;  // BSIZE bits 0: 2048-byte buffers
constexpr uint32_t kTctlEn = 1u << 1;
constexpr uint32_t kTctlPsp = 1u << 3;
constexpr uint32_t kTctlCt = 0x10u << 4;
constexpr uint32_t kTctlCold = 0x40u << 12;
constexpr uint32_t kTipgDefault = 10u | (8u << 10) | (6u << 20);
constexpr uint32_t kRahValid = 1u << 31;
constexpr uint32_t kStatusLinkUp = 1u << 1;
// QEMU's e1000 renegotiates the link after reset (about 0.5 s) and holds received frames until
// the link is up: "ready" waits for it, so the first pings are not held back.
constexpr uint64_t kLinkWaitNs = 3'000'000'000;
constexpr uint64_t kLinkPollNs = 10'000'000;
constexpr uint32_t kIntLsc = 1u << 2;
constexpr uint32_t kIntRxdmt0 = 1u << 4;
constexpr uint32_t kIntRxo = 1u << 6;
constexpr uint32_t kIntRxt0 = 1u << 7;

constexpr uint8_t kRxStatusDd = 1u << 0;
constexpr uint8_t kRxStatusEop = 1u << 1;
constexpr uint8_t kTxCmdEop = 1u << 0;
constexpr uint8_t kTxCmdIfcs = 1u << 1;
constexpr uint8_t kTxCmdRs = 1u << 3;
constexpr uint8_t kTxStatusDd = 1u << 0;

struct RxDesc {
    uint64_t addr;
    uint16_t length;
    uint16_t checksum;
    uint8_t status;
    uint8_t errors;
    uint16_t special;
};
struct TxDesc {
    uint64_t addr;
    uint16_t length;
    uint8_t cso;
    uint8_t cmd;
    uint8_t status;
    uint8_t css;
    uint16_t special;
};
static_assert(sizeof(RxDesc) == 16 && sizeof(TxDesc) == 16);
static_assert(kRxRingSlots % 8 == 0 && kTxRingSlots % 8 == 0, "ring bytes must be multiples of 128");

uint32_t rd(const E1000State& e, uint32_t reg) { return e.regs[reg / 4]; }
void wr(E1000State& e, uint32_t reg, uint32_t v) { e.regs[reg / 4] = v; }
inline void barrier() { asm volatile("mfence" ::: "memory"); }

volatile RxDesc* rx_ring(E1000State& e) { return static_cast<volatile RxDesc*>(e.rx_desc); }
volatile TxDesc* tx_ring(E1000State& e) { return static_cast<volatile TxDesc*>(e.tx_desc); }

}  // namespace

bool e1000_start(Nic* nic, const uint8_t* mac) {
    E1000State& e = nic->e1000;
    uintptr_t bar = pci_mem_base(nic->pci, 0);
    if (!bar) {
        kernel::print("e1000: BAR 0 is not a memory BAR\n");
        return false;
    }
    pci_enable(nic->pci);
    e.regs = static_cast<volatile uint32_t*>(x86::phys_to_virt(bar));
    wr(e, kRegImc, 0xffffffff);
    wr(e, kRegCtrl, rd(e, kRegCtrl) | kCtrlRst);
    for (int i = 0; i < 100000 && (rd(e, kRegCtrl) & kCtrlRst); ++i) {
    }
    wr(e, kRegImc, 0xffffffff);
    (void)rd(e, kRegIcr);
    wr(e, kRegCtrl, (rd(e, kRegCtrl) | kCtrlSlu | kCtrlAsde));

    // MAC: the command line's wins (programmed into receive address 0), else the EEPROM's,
    // which the device loaded into RAL0/RAH0 at reset.
    if (mac) {
        wr(e, kRegRal0, uint32_t(mac[0]) | uint32_t(mac[1]) << 8 | uint32_t(mac[2]) << 16 |
                            uint32_t(mac[3]) << 24);
        wr(e, kRegRah0, uint32_t(mac[4]) | uint32_t(mac[5]) << 8 | kRahValid);
    }
    uint32_t ral = rd(e, kRegRal0), rah = rd(e, kRegRah0);
    for (size_t i = 0; i < 4; ++i) nic->mac[i] = static_cast<uint8_t>(ral >> (8 * i));
    nic->mac[4] = static_cast<uint8_t>(rah);
    nic->mac[5] = static_cast<uint8_t>(rah >> 8);
    for (unsigned i = 0; i < kMtaEntries; ++i) wr(e, kRegMta + 4 * i, 0);

    e.rx_desc = x86::dma_alloc(kRxRingSlots * sizeof(RxDesc), 128);
    e.tx_desc = x86::dma_alloc(kTxRingSlots * sizeof(TxDesc), 128);
    e.rx_buffers = static_cast<uint8_t*>(x86::dma_alloc(kRxRingSlots * kBufferBytes, 64));
    e.tx_buffers = static_cast<uint8_t*>(x86::dma_alloc(kTxRingSlots * kBufferBytes, 64));
    if (!e.rx_desc || !e.tx_desc || !e.rx_buffers || !e.tx_buffers) {
        kernel::print("e1000: DMA pool exhausted\n");
        return false;
    }
    for (size_t i = 0; i < kRxRingSlots; ++i) {
        rx_ring(e)[i].addr = x86::virt_to_phys(e.rx_buffers + i * kBufferBytes);
        rx_ring(e)[i].status = 0;
    }
    uint64_t rx_pa = x86::virt_to_phys(e.rx_desc), tx_pa = x86::virt_to_phys(e.tx_desc);
    wr(e, kRegRdbal, static_cast<uint32_t>(rx_pa));
    wr(e, kRegRdbah, static_cast<uint32_t>(rx_pa >> 32));
    wr(e, kRegRdlen, kRxRingSlots * sizeof(RxDesc));
    wr(e, kRegRdh, 0);
    wr(e, kRegRdt, kRxRingSlots - 1);  // one slot stays empty: head == tail means "ring full"
    wr(e, kRegRdtr, 0);                // no receive-interrupt delay
    e.rx_next = 0;
    wr(e, kRegRctl, kRctlEn | kRctlBam | kRctlSecrc);

    wr(e, kRegTdbal, static_cast<uint32_t>(tx_pa));
    wr(e, kRegTdbah, static_cast<uint32_t>(tx_pa >> 32));
    wr(e, kRegTdlen, kTxRingSlots * sizeof(TxDesc));
    wr(e, kRegTdh, 0);
    wr(e, kRegTdt, 0);
    e.tx_tail = 0;
    e.tx_clean = 0;
    wr(e, kRegTctl, kTctlEn | kTctlPsp | kTctlCt | kTctlCold);
    wr(e, kRegTipg, kTipgDefault);

    wr(e, kRegIms, kIntRxt0 | kIntRxo | kIntRxdmt0 | kIntLsc);
    uint64_t give_up = kernel::now_ns() + kLinkWaitNs;
    while (!(rd(e, kRegStatus) & kStatusLinkUp) && kernel::now_ns() < give_up) {
        kernel::sleep_for(kLinkPollNs);
    }
    if (!(rd(e, kRegStatus) & kStatusLinkUp)) kernel::print("e1000: link still down; going on\n");
    return true;
}

bool e1000_irq_quiet(void* arg) {
    Nic* nic = static_cast<Nic*>(arg);
    // Reading ICR acknowledges every cause and lowers the line; 0: not ours (shared line).
    return rd(nic->e1000, kRegIcr) != 0;
}

void e1000_irq(void* arg) {
    Nic* nic = static_cast<Nic*>(arg);
    ++nic->counters.interrupts;
    nic->wake(nic->wake_ctx);
}

size_t e1000_receive(Nic* nic, RxSink sink, void* ctx, size_t budget) {
    E1000State& e = nic->e1000;
    size_t handled = 0;
    while (handled < budget) {
        volatile RxDesc& d = rx_ring(e)[e.rx_next];
        uint8_t status = d.status;
        if (!(status & kRxStatusDd)) break;
        barrier();
        uint16_t length = d.length;
        if (d.errors) {
            ++nic->counters.rx_errors;
        } else if (!(status & kRxStatusEop) || length > kFrameBytesMax || length == 0) {
            // Part of a frame larger than one buffer (or empty): dropped, counted.
            ++nic->counters.rx_drops;
        } else {
            ++nic->counters.rx_frames;
            nic->counters.rx_bytes += length;
            sink(ctx, e.rx_buffers + e.rx_next * kBufferBytes, length);
        }
        d.status = 0;
        barrier();
        wr(e, kRegRdt, e.rx_next);  // give the slot back
        e.rx_next = (e.rx_next + 1) % kRxRingSlots;
        ++handled;
    }
    return handled;
}

bool e1000_transmit(Nic* nic, size_t length, TxFill fill, void* ctx) {
    E1000State& e = nic->e1000;
    while (e.tx_clean != e.tx_tail && (tx_ring(e)[e.tx_clean].status & kTxStatusDd)) {
        e.tx_clean = (e.tx_clean + 1) % kTxRingSlots;
    }
    uint32_t next = (e.tx_tail + 1) % kTxRingSlots;
    if (next == e.tx_clean) {  // every slot still owned by the device
        ++nic->counters.tx_drops;
        return false;
    }
    uint8_t* buf = e.tx_buffers + e.tx_tail * kBufferBytes;
    fill(ctx, buf, length);
    volatile TxDesc& d = tx_ring(e)[e.tx_tail];
    d.addr = x86::virt_to_phys(buf);
    d.length = static_cast<uint16_t>(length);
    d.cso = 0;
    d.css = 0;
    d.special = 0;
    d.status = 0;
    d.cmd = kTxCmdEop | kTxCmdIfcs | kTxCmdRs;
    barrier();
    e.tx_tail = next;
    wr(e, kRegTdt, e.tx_tail);
    ++nic->counters.tx_frames;
    nic->counters.tx_bytes += length;
    return true;
}

void e1000_update_counters(Nic* nic) {
    nic->counters.rx_device_missed += rd(nic->e1000, kRegMpc);
}

}  // namespace net
