#include "drivers/pci.h"

#include "arch/x86_64/platform.h"

namespace net {
namespace {

constexpr uint8_t kConfigIds = 0x00;
constexpr uint8_t kConfigCommand = 0x04;
constexpr uint8_t kConfigHeaderType = 0x0c;
constexpr uint8_t kConfigBar0 = 0x10;
constexpr uint8_t kConfigInterrupt = 0x3c;
constexpr uint32_t kCommandIo = 1u << 0;
constexpr uint32_t kCommandMemory = 1u << 1;
constexpr uint32_t kCommandBusMaster = 1u << 2;
constexpr unsigned kDevicesPerBus = 32;
constexpr unsigned kFunctionsPerDevice = 8;

bool read_device(uint8_t bus, uint8_t dev, uint8_t fn, PciDevice* out) {
    uint32_t ids = x86::pci_config_read32(bus, dev, fn, kConfigIds);
    if ((ids & 0xffff) == kPciVendorNone) return false;
    out->bus = bus;
    out->dev = dev;
    out->fn = fn;
    out->vendor_id = static_cast<uint16_t>(ids & 0xffff);
    out->device_id = static_cast<uint16_t>(ids >> 16);
    for (int i = 0; i < 6; ++i) {
        out->bar[i] = x86::pci_config_read32(bus, dev, fn, static_cast<uint8_t>(kConfigBar0 + 4 * i));
    }
    out->irq_line = static_cast<uint8_t>(x86::pci_config_read32(bus, dev, fn, kConfigInterrupt) & 0xff);
    return true;
}

}  // namespace

bool pci_find(uint16_t vendor_id, uint16_t device_id, PciDevice* out) {
    for (unsigned bus = 0; bus < kPciBusesMax; ++bus) {
        for (unsigned dev = 0; dev < kDevicesPerBus; ++dev) {
            for (unsigned fn = 0; fn < kFunctionsPerDevice; ++fn) {
                PciDevice d{};
                if (!read_device(static_cast<uint8_t>(bus), static_cast<uint8_t>(dev),
                                 static_cast<uint8_t>(fn), &d)) {
                    if (fn == 0) break;  // no device in this slot
                    continue;
                }
                if (d.vendor_id == vendor_id && d.device_id == device_id) {
                    *out = d;
                    return true;
                }
                if (fn == 0) {
                    uint32_t header = x86::pci_config_read32(d.bus, d.dev, 0, kConfigHeaderType);
                    if (!((header >> 16) & 0x80)) break;  // single-function device
                }
            }
        }
    }
    return false;
}

void pci_enable(const PciDevice& d) {
    uint32_t cmd = x86::pci_config_read32(d.bus, d.dev, d.fn, kConfigCommand);
    cmd = (cmd & 0xffff) | kCommandIo | kCommandMemory | kCommandBusMaster;
    x86::pci_config_write32(d.bus, d.dev, d.fn, kConfigCommand, cmd);
}

uint16_t pci_io_base(const PciDevice& d, int bar) {
    if (!(d.bar[bar] & 1)) return 0;
    return static_cast<uint16_t>(d.bar[bar] & ~0x3u);
}

uintptr_t pci_mem_base(const PciDevice& d, int bar) {
    if (d.bar[bar] & 1) return 0;
    return static_cast<uintptr_t>(d.bar[bar] & ~0xfu);
}

}  // namespace net
