// Byte views and the few byte routines the protocol needs. Freestanding: no libc, no libstdc++
// runtime, so the engine builds unchanged for the kernel, the host tests and Linux tools.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace smp {

// A read-only run of bytes (one lwIP pbuf, one iovec, one part of a blocked sender's message).
struct ConstBytes {
    const uint8_t* data;
    size_t size;
};

// A writable run of bytes (one part of a reply or receive buffer).
struct MutableBytes {
    uint8_t* data;
    size_t size;
};

// A chain of read-only runs: how a datagram arrives (lwIP pbuf chain) and how a sender's message
// is given (scatter/gather parts). The runs are borrowed, never copied into engine memory.
struct ConstChain {
    const ConstBytes* parts;
    size_t count;
};

struct MutableChain {
    const MutableBytes* parts;
    size_t count;
};

// The compiler's builtins: GCC and clang require memcpy/memset even freestanding (the kernel
// provides them), and inline small constant sizes.
inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) { __builtin_memcpy(dst, src, n); }

inline void zero_bytes(uint8_t* dst, size_t n) { __builtin_memset(dst, 0, n); }

inline bool equal_bytes(const uint8_t* a, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) return false;
    }
    return true;
}

// Total bytes of a chain.
inline size_t chain_size(ConstChain c) {
    size_t n = 0;
    for (size_t i = 0; i < c.count; i++) n += c.parts[i].size;
    return n;
}

inline size_t chain_size(MutableChain c) {
    size_t n = 0;
    for (size_t i = 0; i < c.count; i++) n += c.parts[i].size;
    return n;
}

// Copies up to n bytes starting at byte `offset` of chain `c` into dst; returns bytes copied.
inline size_t chain_read(ConstChain c, size_t offset, uint8_t* dst, size_t n) {
    size_t done = 0;
    for (size_t i = 0; i < c.count && done < n; i++) {
        size_t size = c.parts[i].size;
        if (offset >= size) {
            offset -= size;
            continue;
        }
        size_t take = size - offset;
        if (take > n - done) take = n - done;
        copy_bytes(dst + done, c.parts[i].data + offset, take);
        done += take;
        offset = 0;
    }
    return done;
}

// Copies n bytes from src into chain `c` starting at byte `offset`; returns bytes written.
inline size_t chain_write(MutableChain c, size_t offset, const uint8_t* src, size_t n) {
    size_t done = 0;
    for (size_t i = 0; i < c.count && done < n; i++) {
        size_t size = c.parts[i].size;
        if (offset >= size) {
            offset -= size;
            continue;
        }
        size_t take = size - offset;
        if (take > n - done) take = n - done;
        copy_bytes(c.parts[i].data + offset, src + done, take);
        done += take;
        offset = 0;
    }
    return done;
}

// Big-endian loads and stores (the wire's byte order): one unaligned load or store and a byte
// swap each (GCC did not always merge the byte-by-byte form, and every header passes here).
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
inline uint16_t to_be16(uint16_t v) { return __builtin_bswap16(v); }
inline uint32_t to_be32(uint32_t v) { return __builtin_bswap32(v); }
inline uint64_t to_be64(uint64_t v) { return __builtin_bswap64(v); }
#else
inline uint16_t to_be16(uint16_t v) { return v; }
inline uint32_t to_be32(uint32_t v) { return v; }
inline uint64_t to_be64(uint64_t v) { return v; }
#endif
inline uint16_t load16(const uint8_t* p) {
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return to_be16(v);
}
inline uint32_t load32(const uint8_t* p) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return to_be32(v);
}
inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    return to_be64(v);
}
inline void store16(uint8_t* p, uint16_t v) {
    v = to_be16(v);
    __builtin_memcpy(p, &v, 2);
}
inline void store32(uint8_t* p, uint32_t v) {
    v = to_be32(v);
    __builtin_memcpy(p, &v, 4);
}
inline void store64(uint8_t* p, uint64_t v) {
    v = to_be64(v);
    __builtin_memcpy(p, &v, 8);
}

}  // namespace smp
