// COM1 at 115200 8N1, polled: usable before anything else is set up and from interrupt context.
#include "cpu.h"
#include "platform.h"

namespace x86 {
namespace {

constexpr uint16_t kCom1 = 0x3f8;
constexpr uint8_t kLineStatusTransmitEmpty = 0x20;

void put(char c) {
    while ((inb(kCom1 + 5) & kLineStatusTransmitEmpty) == 0) {
    }
    outb(kCom1, uint8_t(c));
}

}  // namespace

void serial_init() {
    outb(kCom1 + 1, 0x00);  // no UART interrupts: output is polled
    outb(kCom1 + 3, 0x80);  // DLAB on: divisor follows
    outb(kCom1 + 0, 0x01);  // divisor 1 = 115200 baud
    outb(kCom1 + 1, 0x00);
    outb(kCom1 + 3, 0x03);  // 8N1, DLAB off
    outb(kCom1 + 2, 0xc7);  // FIFO on, cleared
    outb(kCom1 + 4, 0x03);  // DTR, RTS
}

void serial_write(const char* text, size_t length) {
    for (size_t i = 0; i < length; ++i) put(text[i]);
}

void serial_write(const char* text) {
    while (*text) put(*text++);
}

void serial_write_hex(uint64_t value) {
    char digits[18] = {'0', 'x'};
    for (int i = 0; i < 16; ++i) digits[2 + i] = "0123456789abcdef"[(value >> (60 - 4 * i)) & 0xf];
    serial_write(digits, sizeof digits);
}

void serial_write_decimal(uint64_t value) {
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = char('0' + value % 10);
        value /= 10;
    } while (value);
    serial_write(digits + sizeof digits - n, n);
}

}  // namespace x86
