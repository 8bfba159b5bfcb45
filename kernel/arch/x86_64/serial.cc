// The console: COM1 at 115200 8N1, polled: usable before anything else is set up and from
// interrupt context. When a second 16550 answers at COM2, every byte goes there too, before
// COM1: a cluster node's COM2 is QEMU's `-chardev file`, its log (NODE.log), which takes every
// byte at once, while COM1 is the interactive socket, where a byte waits while a console client
// has not read (cluster/smpcli/net_cluster.py). Input is COM1's alone (net/shell.cc).
#include "cpu.h"
#include "platform.h"

namespace x86 {
namespace {

constexpr uint16_t kCom1 = 0x3f8;
constexpr uint16_t kCom2 = 0x2f8;
constexpr uint8_t kLineStatusTransmitEmpty = 0x20;
constexpr uint16_t kScratch = 7;
constexpr uint8_t kScratchPatterns[] = {0x5a, 0xa5};

bool g_com2;  // a UART answers at COM2 (serial_init's scratch-register test)

void put(uint16_t port, char c) {
    while ((inb(port + 5) & kLineStatusTransmitEmpty) == 0) {
    }
    outb(port, uint8_t(c));
}

void put(char c) {
    if (g_com2) put(kCom2, c);
    put(kCom1, c);
}

void init(uint16_t port) {
    outb(port + 1, 0x00);  // no UART interrupts: output is polled
    outb(port + 3, 0x80);  // DLAB on: divisor follows
    outb(port + 0, 0x01);  // divisor 1 = 115200 baud
    outb(port + 1, 0x00);
    outb(port + 3, 0x03);  // 8N1, DLAB off
    outb(port + 2, 0xc7);  // FIFO on, cleared
    outb(port + 4, 0x03);  // DTR, RTS
}

// A 16550 keeps what is written to its scratch register; with nothing at the port a read
// gives all ones (QEMU without a second -serial), so two patterns tell. Without this test,
// every byte would cost two port accesses more for nothing (each an exit from TCG's code).
bool present(uint16_t port) {
    for (uint8_t pattern : kScratchPatterns) {
        outb(port + kScratch, pattern);
        if (inb(port + kScratch) != pattern) return false;
    }
    return true;
}

}  // namespace

void serial_init() {
    init(kCom1);
    g_com2 = present(kCom2);
    if (g_com2) init(kCom2);
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
