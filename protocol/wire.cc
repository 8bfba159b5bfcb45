// Encode and decode of every SMP message (SPEC.md sections 3 and 4). The decoder never trusts a
// field: every malformed packet is rejected with exactly one DecodeError, never asserted on.
#include "protocol/wire.h"

namespace smp::wire {

// SPEC.md ties: change these only together with the spec.
static_assert(kIpProtocol == 121, "SPEC 3: IPv4 protocol number");
static_assert(kVersion == 1, "SPEC 3.1: version 1");
static_assert(kHeaderBytes == 32, "SPEC 3.1: 32-byte header");
static_assert(kMacBytes == 16, "SPEC 3.4: 16-byte MAC trailer");
static_assert(kMessageBytesMax == 16u * 1024 * 1024, "SPEC 5.3: 16 MiB message maximum");
static_assert(kHelloBytes == 20 && kRequestFixedBytes == 32 && kReplyFixedBytes == 24, "SPEC 4");
static_assert(kPullFixedBytes == 8 && kDataFixedBytes == 12 && kAckFixedBytes == 4, "SPEC 4");
static_assert(kCancelBytes == 8 && kPulseBytes == 20 && kProbeFixedBytes == 8, "SPEC 4");
static_assert(kProbeAckBytes == 8 && kResetBytes == 16 && kNameFixedBytes == 12, "SPEC 4");
static_assert(kChallengeBytes == 8 && kChallengeAckBytes == 24 && kTypeMax == 16, "SPEC 4");
static_assert(kPullRangesMax == 8 && kAckEntriesMax == 32 && kNameBytesMax == 32, "SPEC 4");
static_assert((kFlagRetransmission | kFlagsIgnorable | kFlagsCritical | kFlagAuth) == 0xFF &&
                  (kFlagRetransmission & kFlagsIgnorable) == 0 &&
                  (kFlagsIgnorable & kFlagsCritical) == 0 && (kFlagsCritical & kFlagAuth) == 0,
              "SPEC 3.2: every flag bit has exactly one class");

const char* decode_error_name(DecodeError e) {
    switch (e) {
        case DecodeError::kOk: return "ok";
        case DecodeError::kTooShort: return "too-short";
        case DecodeError::kBadVersion: return "bad-version";
        case DecodeError::kBadLength: return "bad-length";
        case DecodeError::kBadChecksum: return "bad-checksum";
        case DecodeError::kCriticalFlag: return "critical-flag";
        case DecodeError::kUnknownType: return "unknown-type";
        case DecodeError::kBodyTooShort: return "body-too-short";
        case DecodeError::kTrailingBytes: return "trailing-bytes";
        case DecodeError::kBadField: return "bad-field";
        case DecodeError::kCount: break;
    }
    return "?";
}

const char* type_name(Type t) {
    switch (t) {
        case Type::kHello: return "HELLO";
        case Type::kHelloAck: return "HELLO_ACK";
        case Type::kRequest: return "REQUEST";
        case Type::kReply: return "REPLY";
        case Type::kPull: return "PULL";
        case Type::kData: return "DATA";
        case Type::kAck: return "ACK";
        case Type::kCancel: return "CANCEL";
        case Type::kPulse: return "PULSE";
        case Type::kProbe: return "PROBE";
        case Type::kProbeAck: return "PROBE_ACK";
        case Type::kReset: return "RESET";
        case Type::kNameQuery: return "NAME_QUERY";
        case Type::kNameReply: return "NAME_REPLY";
        case Type::kChallenge: return "CHALLENGE";
        case Type::kChallengeAck: return "CHALLENGE_ACK";
    }
    return "?";
}

const char* error_code_name(ErrorCode e) {
    switch (e) {
        case ErrorCode::kOk: return "ok";
        case ErrorCode::kNoSuchChannel: return "no-such-channel";
        case ErrorCode::kTooLarge: return "too-large";
        case ErrorCode::kBusy: return "busy";
        case ErrorCode::kCancelled: return "cancelled";
        case ErrorCode::kTimedOut: return "timed-out";
        case ErrorCode::kAppError: return "app-error";
        case ErrorCode::kStale: return "stale";
        case ErrorCode::kNoSuchService: return "no-such-service";
        case ErrorCode::kServerGone: return "server-gone";
        case ErrorCode::kHostDown: return "host-down";
        case ErrorCode::kPeerRebooted: return "peer-rebooted";
        case ErrorCode::kNoResources: return "no-resources";
        case ErrorCode::kInvalid: return "invalid";
        case ErrorCode::kTruncated: return "truncated";
    }
    return "?";
}

// ---- Checksum ---------------------------------------------------------------------------------
namespace {

// Ones'-complement sum of the native-order 16-bit words of p[0..n), n a multiple of 8, folded to
// 16 bits. 64-bit words with end-around carry: four independent accumulators so the adds overlap.
// The sum is byte-order independent (RFC 1071 2(B)): the caller swaps the folded result once.
uint16_t native_sum64(const uint8_t* p, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w0, w1, w2, w3;
        __builtin_memcpy(&w0, p + i, 8);  // unaligned loads: any start address is fine
        __builtin_memcpy(&w1, p + i + 8, 8);
        __builtin_memcpy(&w2, p + i + 16, 8);
        __builtin_memcpy(&w3, p + i + 24, 8);
        a += w0;
        a += a < w0;  // end-around carry
        b += w1;
        b += b < w1;
        c += w2;
        c += c < w2;
        d += w3;
        d += d < w3;
    }
    for (; i < n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, p + i, 8);
        a += w;
        a += a < w;
    }
    // Fold the four accumulators and then 64 -> 16 bits, each step keeping the carry.
    a += b;
    a += a < b;
    c += d;
    c += c < d;
    a += c;
    a += a < c;
    uint64_t s = (a & 0xFFFFFFFFu) + (a >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    return uint16_t(s);
}

// Ones'-complement accumulator that survives odd-length runs split across a chain.
struct Sum {
    uint64_t sum = 0;  // big-endian 16-bit words; a few adds per run, it cannot overflow
    bool odd = false;  // the next byte is the low half of a 16-bit word

    void add(const uint8_t* p, size_t n) {
        if (odd && n) {
            sum += p[0];
            odd = false;
            p++;
            n--;
        }
        // From here the run starts on a word boundary of the packet: the bulk as 64-bit words.
        size_t bulk = n & ~size_t(7);
        if (bulk) {
            uint16_t s = native_sum64(p, bulk);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            s = __builtin_bswap16(s);
#endif
            sum += s;
        }
        size_t i = bulk;
        for (; i + 1 < n; i += 2) sum += (uint32_t(p[i]) << 8) | p[i + 1];
        if (i < n) {
            sum += uint32_t(p[i]) << 8;
            odd = true;
        }
    }
    uint16_t fold() const {
        uint64_t s = sum;
        while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
        return uint16_t(s);
    }
};

// The ones'-complement sum of one contiguous run that starts on a word boundary of the packet,
// folded to 16 bits, as big-endian words. This is the common case (a packet in one buffer: every
// encode, most decodes), and under QEMU TCG each guest instruction costs time: on x86-64 an
// add-with-carry chain takes 32 bytes in 5 instructions (native_sum64's compare-and-add needs
// about 3 per 8 bytes); elsewhere 32-bit words into a 64-bit sum (no carry to keep: a packet has
// at most 2^14 words).
inline uint16_t flat_sum(const uint8_t* p, size_t n, uint64_t s) {
    size_t i = 0;
#if defined(__x86_64__)
    for (; i + 64 <= n; i += 64) {
        __asm__("addq 0(%[p]), %[s]\n\t"
                "adcq 8(%[p]), %[s]\n\t"
                "adcq 16(%[p]), %[s]\n\t"
                "adcq 24(%[p]), %[s]\n\t"
                "adcq 32(%[p]), %[s]\n\t"
                "adcq 40(%[p]), %[s]\n\t"
                "adcq 48(%[p]), %[s]\n\t"
                "adcq 56(%[p]), %[s]\n\t"
                "adcq $0, %[s]"
                : [s] "+r"(s)
                : [p] "r"(p + i), "m"(*reinterpret_cast<const uint8_t(*)[64]>(p + i))
                : "cc");
    }
    if (i + 32 <= n) {
        __asm__("addq 0(%[p]), %[s]\n\t"
                "adcq 8(%[p]), %[s]\n\t"
                "adcq 16(%[p]), %[s]\n\t"
                "adcq 24(%[p]), %[s]\n\t"
                "adcq $0, %[s]"
                : [s] "+r"(s)
                : [p] "r"(p + i), "m"(*reinterpret_cast<const uint8_t(*)[32]>(p + i))
                : "cc");
        i += 32;
    }
    for (; i + 8 <= n; i += 8) {
        __asm__("addq (%[p]), %[s]\n\t"
                "adcq $0, %[s]"
                : [s] "+r"(s)
                : [p] "r"(p + i), "m"(*reinterpret_cast<const uint8_t(*)[8]>(p + i))
                : "cc");
    }
#else
    for (; i + 4 <= n; i += 4) {
        uint32_t w;
        __builtin_memcpy(&w, p + i, 4);
        s += w;
    }
#endif
    if (i < n) {
        // The last bytes, at their places in a zero-padded word (an odd last byte is the high
        // half of a big-endian word, as RFC 1071 pads it).
        uint64_t w = 0;
        for (size_t k = 0; i + k < n; k++) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            w |= uint64_t(p[i + k]) << (8 * k);
#else
            w |= uint64_t(p[i + k]) << (56 - 8 * k);
#endif
        }
        s += w;
        s += s < w;
    }
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    return to_be16(uint16_t(s));
}

// checksum() of a packet in one buffer of `length` bytes (at least 6). The pseudo-header and the
// checksum field's complement (so the field counts as zero) enter the same native-order sum:
// the sum is byte-order independent as long as every 16-bit word keeps its place in a lane.
inline uint16_t checksum_flat(const uint8_t* p, size_t length, uint32_t src_ipv4, uint32_t dst_ipv4) {
    uint16_t field;
    __builtin_memcpy(&field, p + 4, 2);
    uint64_t s = uint64_t(to_be32(src_ipv4)) + to_be32(dst_ipv4) +
                 to_be32((uint32_t(kIpProtocol) << 16) | uint16_t(length)) + uint16_t(~field);
    uint16_t c = uint16_t(~flat_sum(p, length, s));
    return c == 0 ? 0xFFFF : c;  // as UDP: 0 is never sent
}

}  // namespace

uint16_t checksum(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4) {
    if (packet.count == 1 && packet.parts[0].size >= 6)
        return checksum_flat(packet.parts[0].data, packet.parts[0].size, src_ipv4, dst_ipv4);
    size_t length = chain_size(packet);
    // The pseudo-header's 16-bit words (addresses, zero + protocol, length), added directly.
    Sum s;
    s.sum = (src_ipv4 >> 16) + (src_ipv4 & 0xFFFF) + (dst_ipv4 >> 16) + (dst_ipv4 & 0xFFFF) +
            kIpProtocol + uint16_t(length);
    for (size_t i = 0; i < packet.count; i++) s.add(packet.parts[i].data, packet.parts[i].size);
    // The checksum field (bytes 4-5, a whole word) counts as zero: take its value back out by
    // adding its ones' complement.
    uint16_t field = 0;
    if (packet.count && packet.parts[0].size >= 6) {
        field = load16(packet.parts[0].data + 4);
    } else {
        uint8_t b[2] = {0, 0};
        chain_read(packet, 4, b, 2);
        field = uint16_t((uint32_t(b[0]) << 8) | b[1]);
    }
    s.sum += uint16_t(~field);
    uint16_t c = uint16_t(~s.fold());
    return c == 0 ? 0xFFFF : c;  // as UDP: 0 is never sent
}

uint16_t ipv4_header_checksum(const uint8_t* header, size_t bytes) {
    if (bytes == 20) {
        // Every header we send (no options): five native-order 32-bit words into a 64-bit sum
        // (each 16-bit word keeps its lane), folded, then swapped once. Every packet sent passes
        // here: ~20 guest instructions instead of ~75.
        uint32_t w[5];
        __builtin_memcpy(w, header, 20);
        uint64_t s = uint64_t(w[0]) + w[1] + w[2] + w[3] + w[4];
        s = (s & 0xFFFFFFFFu) + (s >> 32);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        return uint16_t(~to_be16(uint16_t(s)));
    }
    Sum s;
    s.add(header, bytes);
    return uint16_t(~s.fold());
}

// ---- Encode -----------------------------------------------------------------------------------
namespace {

size_t body_bytes(const Message& m) {
    switch (m.header.type) {
        case Type::kHello:
        case Type::kHelloAck: return kHelloBytes;
        case Type::kRequest: return kRequestFixedBytes + m.gather.bytes;
        case Type::kReply: return kReplyFixedBytes + m.gather.bytes;
        case Type::kPull: return kPullFixedBytes + 8 * size_t(m.pull.count);
        case Type::kData: return kDataFixedBytes + m.gather.bytes;
        case Type::kAck: return kAckFixedBytes + 8 * size_t(m.ack.count);
        case Type::kCancel: return kCancelBytes;
        case Type::kPulse: return kPulseBytes;
        case Type::kProbe: {
            // The padding makes the whole IP packet pad_to_bytes long, a MAC included.
            const size_t around = kIpv4HeaderBytes + kHeaderBytes + ((m.header.flags & kFlagAuth) ? kMacBytes : 0);
            size_t want = m.pad_to_bytes > around ? m.pad_to_bytes - around : 0;
            return want > kProbeFixedBytes ? want : kProbeFixedBytes;
        }
        case Type::kProbeAck: return kProbeAckBytes;
        case Type::kReset: return kResetBytes;
        case Type::kNameQuery:
        case Type::kNameReply: return kNameFixedBytes + m.name.name_bytes;
        case Type::kChallenge: return kChallengeBytes;
        case Type::kChallengeAck: return kChallengeAckBytes;
    }
    return 0;
}

bool valid_to_encode(const Message& m) {
    switch (m.header.type) {
        case Type::kPull: return m.pull.count >= 1 && m.pull.count <= kPullRangesMax;
        case Type::kAck: return m.ack.count >= 1 && m.ack.count <= kAckEntriesMax;
        case Type::kNameQuery:
        case Type::kNameReply: return m.name.name_bytes >= 1 && m.name.name_bytes <= kNameBytesMax;
        default: return uint8_t(m.header.type) >= 1 && uint8_t(m.header.type) <= kTypeMax;
    }
}

void put_gather(const Gather& g, uint8_t* out) {
    if (!g.bytes) return;
    if (g.source.count == 1 && g.offset + g.bytes <= g.source.parts[0].size) {
        copy_bytes(out, g.source.parts[0].data + g.offset, g.bytes);  // one part: no walk
        return;
    }
    // encode() does not zero the payload first: a chain shorter than promised ends in zeros.
    size_t done = chain_read(g.source, g.offset, out, g.bytes);
    if (done < g.bytes) zero_bytes(out + done, g.bytes - done);
}

void encode_body(const Message& m, uint8_t* b) {
    switch (m.header.type) {
        case Type::kHello:
        case Type::kHelloAck:
            store32(b, m.hello.window_bytes);
            store16(b + 4, m.hello.window_txns);
            store16(b + 6, m.hello.mtu);
            store32(b + 8, m.hello.message_bytes_max);
            store32(b + 12, m.hello.nonce);
            store32(b + 16, m.hello.eager_bytes_max);
            break;
        case Type::kRequest:
            store32(b, m.request.txn);
            store32(b + 4, m.request.txn_low);
            store32(b + 8, m.request.channel);
            store32(b + 12, m.request.total_bytes);
            store32(b + 16, m.request.eager_bytes);
            store32(b + 20, m.request.offset);
            store32(b + 24, m.request.reply_bytes_max);
            store32(b + 28, m.request.deadline_us);
            put_gather(m.gather, b + kRequestFixedBytes);
            break;
        case Type::kReply:
            store32(b, m.reply.txn);
            store16(b + 4, uint16_t(m.reply.error));
            store16(b + 6, 0);
            store32(b + 8, m.reply.status);
            store32(b + 12, m.reply.total_bytes);
            store32(b + 16, m.reply.eager_bytes);
            store32(b + 20, m.reply.offset);
            put_gather(m.gather, b + kReplyFixedBytes);
            break;
        case Type::kPull:
            store32(b, m.pull.txn);
            b[4] = uint8_t(m.pull.what);
            b[5] = m.pull.count;
            store16(b + 6, 0);
            for (size_t i = 0; i < m.pull.count; i++) {
                store32(b + 8 + 8 * i, m.pull.ranges[i].offset);
                store32(b + 12 + 8 * i, m.pull.ranges[i].bytes);
            }
            break;
        case Type::kData:
            store32(b, m.data.txn);
            b[4] = uint8_t(m.data.what);
            b[5] = 0;
            store16(b + 6, 0);
            store32(b + 8, m.data.offset);
            put_gather(m.gather, b + kDataFixedBytes);
            break;
        case Type::kAck:
            store16(b, m.ack.count);
            store16(b + 2, 0);
            for (size_t i = 0; i < m.ack.count; i++) {
                store32(b + 4 + 8 * i, m.ack.entries[i].txn);
                b[8 + 8 * i] = uint8_t(m.ack.entries[i].kind);
                b[9 + 8 * i] = 0;
                store16(b + 10 + 8 * i, 0);
            }
            break;
        case Type::kCancel:
            store32(b, m.cancel.txn);
            store16(b + 4, uint16_t(m.cancel.reason));
            store16(b + 6, 0);
            break;
        case Type::kPulse:
            store32(b, m.pulse.txn);
            store32(b + 4, m.pulse.txn_low);
            store32(b + 8, m.pulse.channel);
            b[12] = uint8_t(m.pulse.code);
            b[13] = 0;
            store16(b + 14, m.pulse.source);
            store32(b + 16, m.pulse.value);
            break;
        case Type::kProbe:
        case Type::kProbeAck:
            store32(b, m.probe.seq);
            store16(b + 4, m.probe.probe_bytes);
            store16(b + 6, 0);
            break;
        case Type::kReset:
            store64(b, m.reset.named_incarnation);
            store16(b + 8, uint16_t(m.reset.reason));
            store16(b + 10, 0);
            store32(b + 12, 0);
            break;
        case Type::kNameQuery:
        case Type::kNameReply:
            store32(b, m.name.query);
            store16(b + 4, uint16_t(m.name.error));
            b[6] = m.name.name_bytes;
            b[7] = 0;
            store32(b + 8, m.name.channel);
            copy_bytes(b + kNameFixedBytes, reinterpret_cast<const uint8_t*>(m.name.name),
                       m.name.name_bytes);
            break;
        case Type::kChallenge:
            store32(b, m.challenge.nonce);
            store32(b + 4, 0);
            break;
        case Type::kChallengeAck:
            store32(b, m.challenge_ack.nonce);
            store32(b + 4, m.challenge_ack.txn_low);
            store32(b + 8, m.challenge_ack.txn_next);
            store32(b + 12, 0);
            store64(b + 16, m.challenge_ack.open);
            break;
    }
}

}  // namespace

// ---- Authentication: keyed BLAKE2s (RFC 7693), written from the RFC's description -------------
namespace {

constexpr uint32_t kBlake2sIv[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                                    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};
constexpr uint8_t kBlake2sSigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0}};

inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// A little-endian word (BLAKE2s's order): one load on a little-endian machine (the kernel's
// build did not merge the four byte loads into one: 13 instructions a word, 208 a block).
inline uint32_t load_le32(const uint8_t* p) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
#else
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
#endif
}

void blake2s_compress(uint32_t h[8], const uint8_t block[64], uint64_t t, bool last) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++) m[i] = load_le32(block + 4 * i);
    // The working vector in named locals (registers), the rounds unrolled by the compiler.
    uint32_t v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6], v7 = h[7];
    uint32_t v8 = kBlake2sIv[0], v9 = kBlake2sIv[1], v10 = kBlake2sIv[2], v11 = kBlake2sIv[3];
    uint32_t v12 = kBlake2sIv[4] ^ uint32_t(t), v13 = kBlake2sIv[5] ^ uint32_t(t >> 32);
    uint32_t v14 = last ? ~kBlake2sIv[6] : kBlake2sIv[6], v15 = kBlake2sIv[7];
#define SMP_B2S_G(a, b, c, d, x, y)      \
    a = a + b + (x);                     \
    d = rotr32(d ^ a, 16);               \
    c = c + d;                           \
    b = rotr32(b ^ c, 12);               \
    a = a + b + (y);                     \
    d = rotr32(d ^ a, 8);                \
    c = c + d;                           \
    b = rotr32(b ^ c, 7);
    for (int r = 0; r < 10; r++) {
        const uint8_t* s = kBlake2sSigma[r];
        SMP_B2S_G(v0, v4, v8, v12, m[s[0]], m[s[1]])
        SMP_B2S_G(v1, v5, v9, v13, m[s[2]], m[s[3]])
        SMP_B2S_G(v2, v6, v10, v14, m[s[4]], m[s[5]])
        SMP_B2S_G(v3, v7, v11, v15, m[s[6]], m[s[7]])
        SMP_B2S_G(v0, v5, v10, v15, m[s[8]], m[s[9]])
        SMP_B2S_G(v1, v6, v11, v12, m[s[10]], m[s[11]])
        SMP_B2S_G(v2, v7, v8, v13, m[s[12]], m[s[13]])
        SMP_B2S_G(v3, v4, v9, v14, m[s[14]], m[s[15]])
    }
#undef SMP_B2S_G
    h[0] ^= v0 ^ v8;
    h[1] ^= v1 ^ v9;
    h[2] ^= v2 ^ v10;
    h[3] ^= v3 ^ v11;
    h[4] ^= v4 ^ v12;
    h[5] ^= v5 ^ v13;
    h[6] ^= v6 ^ v14;
    h[7] ^= v7 ^ v15;
}

// Feeds bytes [from, to) of a chain.
void feed_range(Blake2s& b, ConstChain c, size_t from, size_t to) {
    size_t at = 0;
    for (size_t i = 0; i < c.count && at < to; i++) {
        const ConstBytes& part = c.parts[i];
        size_t lo = from > at ? from - at : 0, hi = to - at < part.size ? to - at : part.size;
        if (lo < hi) b.update(part.data + lo, hi - lo);
        at += part.size;
    }
}

}  // namespace

void Blake2s::init(const uint8_t* key, size_t key_bytes, size_t out) {
    if (key_bytes > 32) key_bytes = 32;  // RFC 7693: at most 32 key bytes (the block holds 64)
    if (out == 0 || out > 32) out = 32;
    out_bytes = out;
    for (int i = 0; i < 8; i++) h[i] = kBlake2sIv[i];
    h[0] ^= 0x01010000u ^ uint32_t(key_bytes << 8) ^ uint32_t(out);
    t = 0;
    fill = 0;
    for (int i = 0; i < 64; i++) buf[i] = 0;
    if (key_bytes) {
        for (size_t i = 0; i < key_bytes; i++) buf[i] = key[i];
        fill = 64;  // the key block, compressed when more comes (or as the last one)
    }
}

void Blake2s::init(const MacKey& key) {
    out_bytes = kMacBytes;
    for (int i = 0; i < 8; i++) h[i] = key.h[i];
    t = 64;
    fill = 0;
}

MacKey mac_key(const AuthKey& key) {
    Blake2s b;
    b.init(key.bytes, kAuthKeyBytes, kMacBytes);
    MacKey k;
    b.t = 64;
    blake2s_compress(b.h, b.buf, b.t, false);  // the key block, never the last one here
    for (int i = 0; i < 8; i++) k.h[i] = b.h[i];
    return k;
}

void Blake2s::update(const uint8_t* p, size_t n) {
    while (n) {
        if (fill == 64) {  // a full block with more to come: not the last one
            t += 64;
            blake2s_compress(h, buf, t, false);
            fill = 0;
        }
        while (fill == 0 && n > 64) {  // whole blocks with more after them: from the input
            t += 64;
            blake2s_compress(h, p, t, false);
            p += 64;
            n -= 64;
        }
        size_t take = 64 - fill < n ? 64 - fill : n;
        copy_bytes(buf + fill, p, take);
        fill += take;
        p += take;
        n -= take;
    }
}

void Blake2s::final(uint8_t* out) {
    t += fill;
    zero_bytes(buf + fill, 64 - fill);
    blake2s_compress(h, buf, t, true);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    copy_bytes(out, reinterpret_cast<const uint8_t*>(h), out_bytes);  // h's words, little-endian
#else
    for (size_t i = 0; i < out_bytes; i++) out[i] = uint8_t(h[i / 4] >> (8 * (i % 4)));
#endif
}

void packet_mac(ConstChain packet, size_t length, uint32_t src_ipv4, uint32_t dst_ipv4, const MacKey& key,
                uint8_t out[kMacBytes]) {
    Blake2s b;
    b.init(key);
    uint8_t pseudo[12];
    store32(pseudo, src_ipv4);
    store32(pseudo + 4, dst_ipv4);
    store32(pseudo + 8, (uint32_t(kIpProtocol) << 16) | uint16_t(length));
    b.update(pseudo, sizeof pseudo);
    feed_range(b, packet, 0, 4);
    const uint8_t zero[2] = {0, 0};  // the checksum field
    b.update(zero, 2);
    feed_range(b, packet, 6, length - kMacBytes);
    b.final(out);
}

bool mac_ok(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4, const MacKey& key) {
    const size_t length = chain_size(packet);
    uint8_t flags = 0;
    if (length < kHeaderBytes + kMacBytes || chain_read(packet, 2, &flags, 1) != 1 || !(flags & kFlagAuth))
        return false;
    uint8_t want[kMacBytes], got[kMacBytes];
    packet_mac(packet, length, src_ipv4, dst_ipv4, key, want);
    if (chain_read(packet, length - kMacBytes, got, kMacBytes) != kMacBytes) return false;
    uint8_t diff = 0;
    for (size_t i = 0; i < kMacBytes; i++) diff |= uint8_t(want[i] ^ got[i]);
    return diff == 0;
}

size_t encode(Message& m, uint32_t src_ipv4, uint32_t dst_ipv4, uint8_t* out, size_t cap, const MacKey* key) {
    if (key) m.header.flags |= kFlagAuth;
    if (!valid_to_encode(m)) return 0;
    size_t mac = (m.header.flags & kFlagAuth) ? kMacBytes : 0;
    size_t length = kHeaderBytes + body_bytes(m) + mac;
    if (length > cap || length > kPacketBytesMax) return 0;
    // Padding, reserved fields and the MAC room start as zero; a payload gathered from the
    // caller (it ends the body, before the MAC) is written whole below, so it is not zeroed
    // first: at 64 KiB packets that pass over the bytes would cost as much as the copy itself.
    // The header is written whole below, and the fixed bodies of REQUEST, REPLY and DATA have
    // no byte left unwritten (their reserved fields are stored as zero), so only the other
    // types' bodies are zeroed first.
    const bool gathers = m.header.type == Type::kRequest || m.header.type == Type::kReply ||
                         m.header.type == Type::kData;
    if (!gathers) zero_bytes(out + kHeaderBytes, length - kHeaderBytes - mac);
    if (mac) zero_bytes(out + length - mac, mac);
    Header& h = m.header;
    h.version = kVersion;
    h.length = uint16_t(length);
    store32(out, (uint32_t(h.version) << 24) | (uint32_t(h.type) << 16) | (uint32_t(h.flags) << 8) |
                     h.priority);
    store32(out + 4, h.length);  // the checksum field (bytes 4-5) as zero until the end
    store32(out + 8, (uint32_t(h.dst_endpoint) << 16) | h.src_endpoint);
    store32(out + 12, h.ack);
    store64(out + 16, h.dst_incarnation);
    store64(out + 24, h.src_incarnation);
    encode_body(m, out + kHeaderBytes);
    if (key) {
        const ConstBytes whole{out, length};
        packet_mac(ConstChain{&whole, 1}, length, src_ipv4, dst_ipv4, *key, out + length - mac);
    }
    h.checksum = checksum_flat(out, length, src_ipv4, dst_ipv4);
    store16(out + 4, h.checksum);
    return length;
}

// ---- Decode -----------------------------------------------------------------------------------
namespace {

// Checks a body of `have` bytes (MAC excluded) against type t's size rules and fills m.
DecodeError decode_body(const uint8_t* b, size_t have, size_t body_offset, Message& m) {
    auto fixed = [&](size_t need) {
        if (have < need) return DecodeError::kBodyTooShort;
        if (have > need) return DecodeError::kTrailingBytes;
        return DecodeError::kOk;
    };
    DecodeError e = DecodeError::kOk;
    switch (m.header.type) {
        case Type::kHello:
        case Type::kHelloAck:
            if ((e = fixed(kHelloBytes)) != DecodeError::kOk) return e;
            m.hello.window_bytes = load32(b);
            m.hello.window_txns = load16(b + 4);
            m.hello.mtu = load16(b + 6);
            m.hello.message_bytes_max = load32(b + 8);
            m.hello.nonce = load32(b + 12);
            m.hello.eager_bytes_max = load32(b + 16);
            if (m.hello.mtu < kMtuMin) return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kRequest: {
            if (have < kRequestFixedBytes) return DecodeError::kBodyTooShort;
            Request& r = m.request;
            r.txn = load32(b);
            r.txn_low = load32(b + 4);
            r.channel = load32(b + 8);
            r.total_bytes = load32(b + 12);
            r.eager_bytes = load32(b + 16);
            r.offset = load32(b + 20);
            r.reply_bytes_max = load32(b + 24);
            r.deadline_us = load32(b + 28);
            uint64_t data = have - kRequestFixedBytes;
            m.payload = Payload{uint32_t(body_offset + kRequestFixedBytes), uint32_t(data)};
            if (r.txn == 0 || txn_before(r.txn, r.txn_low) || r.total_bytes > kMessageBytesMax ||
                r.eager_bytes > r.total_bytes || uint64_t(r.offset) + data > r.eager_bytes ||
                (data == 0 && r.eager_bytes != 0) || r.reply_bytes_max > kMessageBytesMax)
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
        case Type::kReply: {
            if (have < kReplyFixedBytes) return DecodeError::kBodyTooShort;
            Reply& r = m.reply;
            r.txn = load32(b);
            r.error = ErrorCode(load16(b + 4));
            r.reserved = load16(b + 6);
            r.status = load32(b + 8);
            r.total_bytes = load32(b + 12);
            r.eager_bytes = load32(b + 16);
            r.offset = load32(b + 20);
            uint64_t data = have - kReplyFixedBytes;
            m.payload = Payload{uint32_t(body_offset + kReplyFixedBytes), uint32_t(data)};
            if (r.txn == 0 || r.total_bytes > kMessageBytesMax || r.eager_bytes > r.total_bytes ||
                uint64_t(r.offset) + data > r.eager_bytes ||
                (data == 0 && r.eager_bytes != 0) || uint16_t(r.error) > uint16_t(ErrorCode::kServerGone) ||
                (r.error != ErrorCode::kOk && r.total_bytes != 0))
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
        case Type::kPull: {
            if (have < kPullFixedBytes) return DecodeError::kBodyTooShort;
            Pull& p = m.pull;
            p.txn = load32(b);
            p.what = DataKind(b[4]);
            p.count = b[5];
            if (p.count < 1 || p.count > kPullRangesMax) return DecodeError::kBadField;
            if ((e = fixed(kPullFixedBytes + 8 * size_t(p.count))) != DecodeError::kOk) return e;
            for (size_t i = 0; i < p.count; i++) {
                p.ranges[i].offset = load32(b + 8 + 8 * i);
                p.ranges[i].bytes = load32(b + 12 + 8 * i);
                if (p.ranges[i].bytes == 0 ||
                    uint64_t(p.ranges[i].offset) + p.ranges[i].bytes > kMessageBytesMax)
                    return DecodeError::kBadField;
            }
            if (p.txn == 0 || (p.what != DataKind::kRequest && p.what != DataKind::kReply))
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
        case Type::kData: {
            if (have < kDataFixedBytes) return DecodeError::kBodyTooShort;
            Data& d = m.data;
            d.txn = load32(b);
            d.what = DataKind(b[4]);
            d.offset = load32(b + 8);
            uint64_t data = have - kDataFixedBytes;
            m.payload = Payload{uint32_t(body_offset + kDataFixedBytes), uint32_t(data)};
            if (d.txn == 0 || data == 0 || uint64_t(d.offset) + data > kMessageBytesMax ||
                (d.what != DataKind::kRequest && d.what != DataKind::kReply))
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
        case Type::kAck: {
            if (have < kAckFixedBytes) return DecodeError::kBodyTooShort;
            m.ack.count = load16(b);
            if (m.ack.count < 1 || m.ack.count > kAckEntriesMax) return DecodeError::kBadField;
            if ((e = fixed(kAckFixedBytes + 8 * size_t(m.ack.count))) != DecodeError::kOk) return e;
            for (size_t i = 0; i < m.ack.count; i++) {
                m.ack.entries[i].txn = load32(b + 4 + 8 * i);
                uint8_t kind = b[8 + 8 * i];
                m.ack.entries[i].kind = AckKind(kind);
                if (m.ack.entries[i].txn == 0 || kind < 1 || kind > 4) return DecodeError::kBadField;
            }
            return DecodeError::kOk;
        }
        case Type::kCancel:
            if ((e = fixed(kCancelBytes)) != DecodeError::kOk) return e;
            m.cancel.txn = load32(b);
            m.cancel.reason = ErrorCode(load16(b + 4));
            if (m.cancel.txn == 0 ||
                (m.cancel.reason != ErrorCode::kCancelled && m.cancel.reason != ErrorCode::kTimedOut))
                return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kPulse:
            if ((e = fixed(kPulseBytes)) != DecodeError::kOk) return e;
            m.pulse.txn = load32(b);
            m.pulse.txn_low = load32(b + 4);
            m.pulse.channel = load32(b + 8);
            m.pulse.code = int8_t(b[12]);
            m.pulse.source = load16(b + 14);
            m.pulse.value = load32(b + 16);
            if (m.pulse.txn == 0 || txn_before(m.pulse.txn, m.pulse.txn_low)) return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kProbe:
            if (have < kProbeFixedBytes) return DecodeError::kBodyTooShort;
            m.probe.seq = load32(b);
            m.probe.probe_bytes = load16(b + 4);
            m.payload = Payload{uint32_t(body_offset + kProbeFixedBytes),
                                uint32_t(have - kProbeFixedBytes)};
            // The padding must make the IP packet exactly probe_bytes long.
            if (size_t(m.probe.probe_bytes) != kIpv4HeaderBytes + m.header.length)
                return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kProbeAck:
            if ((e = fixed(kProbeAckBytes)) != DecodeError::kOk) return e;
            m.probe.seq = load32(b);
            m.probe.probe_bytes = load16(b + 4);
            if (m.probe.probe_bytes < kIpv4HeaderBytes + kHeaderBytes + kProbeFixedBytes)
                return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kReset:
            if ((e = fixed(kResetBytes)) != DecodeError::kOk) return e;
            m.reset.named_incarnation = load64(b);
            m.reset.reason = ResetReason(load16(b + 8));
            if (m.reset.reason != ResetReason::kUnknownIncarnation &&
                m.reset.reason != ResetReason::kNoPeerSlot)
                return DecodeError::kBadField;
            return DecodeError::kOk;
        case Type::kNameQuery:
        case Type::kNameReply: {
            if (have < kNameFixedBytes) return DecodeError::kBodyTooShort;
            Name& n = m.name;
            n.query = load32(b);
            n.error = ErrorCode(load16(b + 4));
            n.name_bytes = b[6];
            n.channel = load32(b + 8);
            if (n.name_bytes < 1 || n.name_bytes > kNameBytesMax) return DecodeError::kBadField;
            if ((e = fixed(kNameFixedBytes + n.name_bytes)) != DecodeError::kOk) return e;
            copy_bytes(reinterpret_cast<uint8_t*>(n.name), b + kNameFixedBytes, n.name_bytes);
            if (m.header.type == Type::kNameQuery && n.error != ErrorCode::kOk)
                return DecodeError::kBadField;
            if (n.error != ErrorCode::kOk && n.error != ErrorCode::kNoSuchService)
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
        case Type::kChallenge:
            if ((e = fixed(kChallengeBytes)) != DecodeError::kOk) return e;
            m.challenge.nonce = load32(b);
            return DecodeError::kOk;
        case Type::kChallengeAck: {
            if ((e = fixed(kChallengeAckBytes)) != DecodeError::kOk) return e;
            ChallengeAck& a = m.challenge_ack;
            a.nonce = load32(b);
            a.txn_low = load32(b + 4);
            a.txn_next = load32(b + 8);
            a.open = load64(b + 16);
            // A client's open txns lie in [low, next), at most a window (64) wide (SPEC 4.11).
            const uint32_t span = txn_dist(a.txn_low, a.txn_next);
            if (a.txn_low == 0 || a.txn_next == 0 || span > 64 || (span < 64 && (a.open >> span) != 0))
                return DecodeError::kBadField;
            return DecodeError::kOk;
        }
    }
    return DecodeError::kUnknownType;
}

}  // namespace

DecodeError decode(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4, Message& m,
                   bool verify_checksum) {
    size_t size = packet.count == 1 ? packet.parts[0].size : chain_size(packet);
    if (size < kHeaderBytes) return DecodeError::kTooShort;
    // The fixed part is parsed in place when the first buffer holds it (a packet in one buffer,
    // or the first pbuf of a chain): only a prefix split across buffers is gathered first.
    uint8_t gathered[kParseBytesMax];
    size_t prefix = size < kParseBytesMax ? size : kParseBytesMax;
    const uint8_t* buf = packet.parts[0].data;
    if (packet.parts[0].size < prefix) {
        chain_read(packet, 0, gathered, prefix);
        buf = gathered;
    }
    Header& h = m.header;
    h.version = buf[0];
    if (h.version != kVersion) return DecodeError::kBadVersion;
    h.length = load16(buf + 6);
    if (h.length != size) return DecodeError::kBadLength;
    h.checksum = load16(buf + 4);
    if (verify_checksum &&
        h.checksum != (packet.count == 1 ? checksum_flat(packet.parts[0].data, size, src_ipv4, dst_ipv4)
                                         : checksum(packet, src_ipv4, dst_ipv4)))
        return DecodeError::kBadChecksum;
    h.flags = buf[2];
    if (h.flags & kFlagsCritical) return DecodeError::kCriticalFlag;
    uint8_t type = buf[1];
    if (type < 1 || type > kTypeMax) return DecodeError::kUnknownType;
    h.type = Type(type);
    h.priority = buf[3];
    h.dst_endpoint = load16(buf + 8);
    h.src_endpoint = load16(buf + 10);
    h.ack = load32(buf + 12);
    h.dst_incarnation = load64(buf + 16);
    h.src_incarnation = load64(buf + 24);
    if (h.src_incarnation == 0) return DecodeError::kBadField;
    size_t mac = (h.flags & kFlagAuth) ? kMacBytes : 0;
    if (size < kHeaderBytes + mac) return DecodeError::kBodyTooShort;
    size_t body = size - kHeaderBytes - mac;
    m.payload = Payload{};
    // Types with payload only look at their fixed part, which always fits in buf.
    return decode_body(buf + kHeaderBytes, body, kHeaderBytes, m);
}

}  // namespace smp::wire
