#include "arch/arch.h"
#include "panic.h"

namespace kernel {
namespace {

// Writes either to a caller's buffer or, in chunks, to the console.
struct Sink {
    char* buffer;
    size_t size;
    size_t length = 0;
    char chunk[128];
    size_t chunk_length = 0;

    void put(char c) {
        if (buffer) {
            if (length + 1 < size) buffer[length] = c;
        } else {
            chunk[chunk_length++] = c;
            if (chunk_length == sizeof(chunk)) flush();
        }
        ++length;
    }
    void flush() {
        if (!buffer && chunk_length) arch::console_write(chunk, chunk_length);
        chunk_length = 0;
    }
};

void put_padded(Sink& out, const char* text, size_t length, int width, bool left, char fill) {
    int pad = width > static_cast<int>(length) ? width - static_cast<int>(length) : 0;
    if (!left) for (int i = 0; i < pad; ++i) out.put(fill);
    for (size_t i = 0; i < length; ++i) out.put(text[i]);
    if (left) for (int i = 0; i < pad; ++i) out.put(' ');
}

void put_number(Sink& out, uint64_t value, bool negative, unsigned base, int width, bool left,
                char fill) {
    char digits[24];
    size_t n = 0;
    do {
        unsigned d = static_cast<unsigned>(value % base);
        digits[n++] = static_cast<char>(d < 10 ? '0' + d : 'a' + d - 10);
        value /= base;
    } while (value);
    if (negative) digits[n++] = '-';
    char text[24];
    for (size_t i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
    put_padded(out, text, n, width, left, fill);
}

void format_into(Sink& out, const char* f, va_list args) {
    for (; *f; ++f) {
        if (*f != '%') {
            out.put(*f);
            continue;
        }
        ++f;
        bool left = false;
        char fill = ' ';
        if (*f == '-') { left = true; ++f; }
        if (*f == '0') { fill = '0'; ++f; }
        int width = 0;
        while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
        int longs = 0;
        while (*f == 'l' || *f == 'z') { longs = (*f == 'z') ? 2 : longs + 1; ++f; }
        switch (*f) {
        case 'd': {
            int64_t v = longs ? va_arg(args, int64_t) : va_arg(args, int);
            uint64_t mag = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
            put_number(out, mag, v < 0, 10, width, left, fill);
            break;
        }
        case 'u':
        case 'x': {
            uint64_t v = longs ? va_arg(args, uint64_t) : va_arg(args, unsigned);
            put_number(out, v, false, *f == 'x' ? 16 : 10, width, left, fill);
            break;
        }
        case 'p':
            put_number(out, reinterpret_cast<uintptr_t>(va_arg(args, void*)), false, 16, width,
                       left, fill);
            break;
        case 's': {
            const char* s = va_arg(args, const char*);
            if (!s) s = "(null)";
            size_t n = 0;
            while (s[n]) ++n;
            put_padded(out, s, n, width, left, ' ');
            break;
        }
        case 'c': out.put(static_cast<char>(va_arg(args, int))); break;
        case '%': out.put('%'); break;
        case '\0': return;
        default: out.put('%'); out.put(*f); break;
        }
    }
}

}  // namespace

void vprint(const char* f, va_list args) {
    Sink out{nullptr, 0, 0, {}, 0};
    format_into(out, f, args);
    out.flush();
}

void print(const char* f, ...) {
    va_list args;
    va_start(args, f);
    vprint(f, args);
    va_end(args);
}

size_t format(char* buffer, size_t size, const char* f, ...) {
    Sink out{buffer, size, 0, {}, 0};
    va_list args;
    va_start(args, f);
    format_into(out, f, args);
    va_end(args);
    if (size) buffer[out.length < size ? out.length : size - 1] = '\0';
    return out.length;
}

void panic(const char* reason) {
    arch::irq_save();
    print("\nkernel panic: %s\n", reason);
    arch::exit(kExitPanic);
}

}  // namespace kernel
