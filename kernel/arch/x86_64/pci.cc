// PCI configuration mechanism #1 (ports 0xcf8 address, 0xcfc data).
#include "platform.h"

namespace x86 {
namespace {

constexpr uint16_t kConfigAddress = 0xcf8;
constexpr uint16_t kConfigData = 0xcfc;

uint32_t address(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset) {
    return (1u << 31) | (uint32_t(bus) << 16) | (uint32_t(dev & 31) << 11) |
           (uint32_t(fn & 7) << 8) | (offset & 0xfc);
}

// The address/data pair is one shared register: no interrupt may come in between.
uint64_t lock() {
    uint64_t flags;
    asm volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    return flags;
}
void unlock(uint64_t flags) {
    if (flags & (1u << 9)) asm volatile("sti" : : : "memory");
}

}  // namespace

uint32_t pci_config_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset) {
    uint64_t f = lock();
    outl(kConfigAddress, address(bus, dev, fn, offset));
    uint32_t v = inl(kConfigData);
    unlock(f);
    return v;
}

void pci_config_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset, uint32_t value) {
    uint64_t f = lock();
    outl(kConfigAddress, address(bus, dev, fn, offset));
    outl(kConfigData, value);
    unlock(f);
}

}  // namespace x86
