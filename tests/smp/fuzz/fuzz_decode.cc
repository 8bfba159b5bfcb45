// libFuzzer target: the decoder on arbitrary bytes, as one buffer and split into a chain. Every
// input is either rejected with a reason or decodes to fields that re-encode and decode again.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocol/wire.h"

using namespace smp;
using namespace smp::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr uint32_t kSrc = 0x0A000001, kDst = 0x0A000002;
    Message m;
    DecodeError e = decode(data, size, kSrc, kDst, m, /*verify_checksum=*/false);
    if (size_t(e) >= size_t(DecodeError::kCount)) abort();
    // The same bytes split in three must give the same verdict (pbuf chains).
    if (size >= 3) {
        size_t a = data[0] % size, b = a + (size - a) / 2;
        ConstBytes parts[3] = {{data, a}, {data + a, b - a}, {data + b, size - b}};
        Message m2;
        if (decode(ConstChain{parts, 3}, kSrc, kDst, m2, false) != e) abort();
    }
    if (e != DecodeError::kOk) return 0;
    if (m.payload.offset + size_t(m.payload.bytes) > size) abort();
    // Re-encode what was decoded (with its payload) and decode again, checksum included.
    ConstBytes whole{data, size};
    if (m.header.type == Type::kRequest || m.header.type == Type::kReply || m.header.type == Type::kData)
        m.gather = Gather{ConstChain{&whole, 1}, m.payload.offset, m.payload.bytes};
    if (m.header.type == Type::kProbe) m.pad_to_bytes = m.probe.probe_bytes;
    m.header.flags &= uint8_t(~kFlagAuth);
    static uint8_t out[70000];
    size_t n = encode(m, kSrc, kDst, out, sizeof out);
    if (n == 0) abort();
    Message back;
    if (decode(out, n, kSrc, kDst, back) != DecodeError::kOk) abort();
    if (back.header.type != m.header.type || back.header.src_incarnation != m.header.src_incarnation) abort();
    return 0;
}
