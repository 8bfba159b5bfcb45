// PCI bus scan for NICs (configuration mechanism #1 through the x86_64 platform API).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace net {

struct PciDevice {
    uint8_t bus, dev, fn;
    uint16_t vendor_id, device_id;
    uint32_t bar[6];       // raw BAR values as read
    uint8_t irq_line;      // config 0x3c, the legacy line SeaBIOS routed
};

constexpr uint16_t kPciVendorNone = 0xffff;

// Finds the first function with the given ids (bus 0..kPciBusesMax-1). true and *out on success.
constexpr unsigned kPciBusesMax = 4;  // QEMU's i440fx puts every device on bus 0
bool pci_find(uint16_t vendor_id, uint16_t device_id, PciDevice* out);
// Enables I/O and memory decoding and bus mastering (DMA needs the bus-master bit).
void pci_enable(const PciDevice& device);
// The I/O port base of an I/O BAR, or 0 if the BAR is not an I/O BAR.
uint16_t pci_io_base(const PciDevice& device, int bar);
// The physical address of a 32-bit memory BAR, or 0 if the BAR is not a memory BAR.
uintptr_t pci_mem_base(const PciDevice& device, int bar);

}  // namespace net
