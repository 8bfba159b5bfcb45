// The wire format: every message type round-trips, every malformed packet is rejected with its
// reason, the checksum is the same over any split of a chain.
#include <gtest/gtest.h>

#include <stdio.h>
#include <string.h>

#include <string>
#include <utility>

#include <functional>
#include <vector>

#include "protocol/wire.h"

namespace smp::wire {
namespace {

constexpr uint32_t kSrc = 0x0A000001, kDst = 0x0A000002;

Message base(Type t) {
    Message m;
    m.header.type = t;
    m.header.priority = 9;
    m.header.dst_endpoint = 3;
    m.header.src_endpoint = 4;
    m.header.ack = 77;
    m.header.dst_incarnation = 0x1122334455667788ull;
    m.header.src_incarnation = 0x99AABBCCDDEEFF01ull;
    return m;
}

std::vector<Message> every_type(const std::vector<uint8_t>& payload, ConstBytes& part) {
    part = ConstBytes{payload.data(), payload.size()};
    std::vector<Message> all;
    Message m = base(Type::kHello);
    m.hello = Hello{1000, 16, 1500, 1 << 20, 42, 8192};
    all.push_back(m);
    m = base(Type::kHelloAck);
    m.hello = Hello{2000, 8, 1280, 1 << 24, 42, 0};
    all.push_back(m);
    m = base(Type::kRequest);
    m.request = Request{5, 3, 7, 5000, 100, 0, 64, 123456};
    m.gather = Gather{ConstChain{&part, 1}, 0, 100};
    all.push_back(m);
    m = base(Type::kReply);
    m.reply = Reply{5, ErrorCode::kOk, 0, 99, 300, 100, 0};
    m.gather = Gather{ConstChain{&part, 1}, 0, 100};
    all.push_back(m);
    m = base(Type::kReply);
    m.reply = Reply{6, ErrorCode::kAppError, 0, 1234, 0, 0, 0};
    all.push_back(m);
    m = base(Type::kPull);
    m.pull.txn = 5;
    m.pull.what = DataKind::kRequest;
    m.pull.count = 2;
    m.pull.ranges[0] = Range{100, 1000};
    m.pull.ranges[1] = Range{4000, 1000};
    all.push_back(m);
    m = base(Type::kData);
    m.data = Data{5, DataKind::kReply, 100};
    m.gather = Gather{ConstChain{&part, 1}, 10, 90};
    all.push_back(m);
    m = base(Type::kAck);
    m.ack.count = 3;
    m.ack.entries[0] = AckEntry{5, AckKind::kRequestReceived};
    m.ack.entries[1] = AckEntry{6, AckKind::kReplyReceived};
    m.ack.entries[2] = AckEntry{7, AckKind::kPulseReceived};
    all.push_back(m);
    m = base(Type::kCancel);
    m.cancel = Cancel{5, ErrorCode::kTimedOut};
    all.push_back(m);
    m = base(Type::kPulse);
    m.pulse = Pulse{8, 8, 7, -3, 0xDEADBEEF, 0xBEEF};
    all.push_back(m);
    m = base(Type::kProbe);
    m.probe = Probe{1, 1280};
    m.pad_to_bytes = 1280;
    all.push_back(m);
    m = base(Type::kProbeAck);
    m.probe = Probe{1, 1280};
    all.push_back(m);
    m = base(Type::kReset);
    m.reset = Reset{0x1234, ResetReason::kUnknownIncarnation};
    all.push_back(m);
    m.reset = Reset{0x1234, ResetReason::kNoPeerSlot};
    all.push_back(m);
    for (Type t : {Type::kNameQuery, Type::kNameReply}) {
        m = base(t);
        m.name.query = 0x00010002;
        m.name.error = t == Type::kNameReply ? ErrorCode::kNoSuchService : ErrorCode::kOk;
        m.name.channel = t == Type::kNameReply ? 9 : 0;
        m.name.name_bytes = 4;
        memcpy(m.name.name, "echo", 4);
        all.push_back(m);
    }
    m = base(Type::kChallenge);
    m.challenge = Challenge{0xC0FFEE01};
    all.push_back(m);
    m = base(Type::kChallengeAck);
    // txn low just below the wrap: the span to txn next (4: ...FE, ...FF, 1, 2) skips 0 (SPEC 5.1).
    m.challenge_ack = ChallengeAck{0xC0FFEE01, 0xFFFFFFFEu, 3, 0b101};
    all.push_back(m);
    return all;
}

TEST(Wire, EveryTypeRoundTrips) {
    std::vector<uint8_t> payload(200);
    for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t(i * 7);
    ConstBytes part;
    for (Message m : every_type(payload, part)) {
        uint8_t buf[2048];
        size_t n = encode(m, kSrc, kDst, buf, sizeof buf);
        ASSERT_GT(n, kHeaderBytes) << type_name(m.header.type);
        Message d;
        ASSERT_EQ(decode(buf, n, kSrc, kDst, d), DecodeError::kOk) << type_name(m.header.type);
        EXPECT_EQ(d.header.type, m.header.type);
        EXPECT_EQ(d.header.priority, 9);
        EXPECT_EQ(d.header.ack, 77u);
        EXPECT_EQ(d.header.dst_endpoint, 3);
        EXPECT_EQ(d.header.src_incarnation, m.header.src_incarnation);
        EXPECT_EQ(d.header.length, n);
        switch (m.header.type) {
            case Type::kRequest:
                EXPECT_EQ(d.request.deadline_us, 123456u);
                EXPECT_EQ(d.payload.bytes, 100u);
                EXPECT_EQ(0, memcmp(buf + d.payload.offset, payload.data(), 100));
                break;
            case Type::kData:
                EXPECT_EQ(d.payload.bytes, 90u);
                EXPECT_EQ(0, memcmp(buf + d.payload.offset, payload.data() + 10, 90));
                break;
            case Type::kPull: EXPECT_EQ(d.pull.ranges[1].offset, 4000u); break;
            case Type::kAck: EXPECT_EQ(d.ack.entries[2].kind, AckKind::kPulseReceived); break;
            case Type::kPulse:
                EXPECT_EQ(d.pulse.code, -3);
                EXPECT_EQ(d.pulse.value, 0xDEADBEEFu);
                EXPECT_EQ(d.pulse.source, 0xBEEFu);
                break;
            case Type::kProbe: EXPECT_EQ(n + kIpv4HeaderBytes, 1280u); break;
            case Type::kNameReply:
                EXPECT_EQ(d.name.error, ErrorCode::kNoSuchService);
                EXPECT_EQ(0, memcmp(d.name.name, "echo", 4));
                break;
            case Type::kChallenge: EXPECT_EQ(d.challenge.nonce, 0xC0FFEE01u); break;
            case Type::kChallengeAck:
                EXPECT_EQ(d.challenge_ack.nonce, 0xC0FFEE01u);
                EXPECT_EQ(d.challenge_ack.txn_low, 0xFFFFFFFEu);
                EXPECT_EQ(d.challenge_ack.txn_next, 3u);
                EXPECT_EQ(d.challenge_ack.open, 0b101u);
                break;
            default: break;
        }
        // A wrong pseudo-header (another destination) fails the checksum.
        EXPECT_EQ(decode(buf, n, kSrc, kDst + 1, d), DecodeError::kBadChecksum);
    }
}

// Keyed BLAKE2s against known answers: RFC 7693 Appendix B (unkeyed "abc", 32 bytes) and, keyed
// as the MAC is (32-byte key 00..1f, 16-byte digest, input 00 01 02 ...), values from Python's
// hashlib.blake2s(data, key=key, digest_size=16), an implementation of its own.
TEST(Wire, Blake2sMatchesKnownAnswers) {
    auto hex = [](const uint8_t* p, size_t n) {
        std::string s;
        for (size_t i = 0; i < n; i++) {
            char b[3];
            snprintf(b, sizeof b, "%02x", p[i]);
            s += b;
        }
        return s;
    };
    uint8_t out[32];
    Blake2s b;
    b.init(nullptr, 0, 32);
    b.update(reinterpret_cast<const uint8_t*>("abc"), 3);
    b.final(out);
    EXPECT_EQ(hex(out, 32), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
    uint8_t key[32], data[255];
    for (int i = 0; i < 32; i++) key[i] = uint8_t(i);
    for (int i = 0; i < 255; i++) data[i] = uint8_t(i);
    const std::pair<size_t, const char*> known[] = {
        {0, "9536f9b267655743dee97b8a670f9f53"},   {1, "13bacfb85b48a1223c595f8c1e7e82cb"},
        {63, "ece382a8bd5018f1de5da44b72cea75b"},  {64, "f1efa90d2547036841ecd3627fafbc36"},
        {65, "811ff8686d23a435ecbd0bdafcd27b1b"},  {128, "8c09f698d03eaf88abf69f8147865ef6"},
        {129, "5c363ae42a5bec26fbc5e996428d9bd7"}, {192, "75e5d1a1e374a04a699247dad827b6cf"},
        {255, "cd075928ab7e6883e697fe7fd3ac43ee"}};
    for (const auto& [n, want] : known) {
        // Whole, and fed in uneven pieces (the MAC is fed part by part from a chain).
        b.init(key, 32, 16);
        b.update(data, n);
        b.final(out);
        EXPECT_EQ(hex(out, 16), want) << n;
        b.init(key, 32, 16);
        for (size_t at = 0, step = 1; at < n; at += step, step = step * 2 + 1)
            b.update(data + at, step < n - at ? step : n - at);
        b.final(out);
        EXPECT_EQ(hex(out, 16), want) << n << " in pieces";
        b.init(key, 32, 16);  // in whole blocks (a block boundary at each piece's end)
        for (size_t at = 0; at < n; at += 64) b.update(data + at, n - at < 64 ? n - at : 64);
        b.final(out);
        EXPECT_EQ(hex(out, 16), want) << n << " in blocks";
        // And from the key's state made once (MacKey), as every packet's MAC is (its input is
        // never empty: the key block is never the last one).
        if (n == 0) continue;
        AuthKey k{};
        for (int i = 0; i < 32; i++) k.bytes[i] = key[i];
        b.init(mac_key(k));
        b.update(data, n);
        b.final(out);
        EXPECT_EQ(hex(out, 16), want) << n << " from a MacKey";
    }
}

// The MAC of a packet is the keyed BLAKE2s of SPEC 3.4's input, byte for byte: the pseudo-header
// (source, destination, 0, 121, length) and the packet up to the MAC with the checksum field as
// zero (expected value from Python's hashlib.blake2s over that input, key 00..1f, 16 bytes).
TEST(Wire, PacketMacIsBlake2sOfThePseudoHeaderAndThePacket) {
    AuthKey k{};
    for (int i = 0; i < 32; i++) k.bytes[i] = uint8_t(i);
    uint8_t pkt[100];
    for (int i = 0; i < 100; i++) pkt[i] = uint8_t(i * 3);
    pkt[6] = 0;
    pkt[7] = 100;
    uint8_t out[kMacBytes];
    const ConstBytes whole{pkt, sizeof pkt};
    packet_mac(ConstChain{&whole, 1}, sizeof pkt, 0x0A000001, 0x0A000002, mac_key(k), out);
    std::string got;
    for (uint8_t x : out) {
        char b[3];
        snprintf(b, sizeof b, "%02x", x);
        got += b;
    }
    EXPECT_EQ(got, "a5ea6ee1bc4db2f0f8264e52c9cd8c62");
}

// With a key, every type round-trips with AUTH and a MAC that verifies over any split of the
// packet; a changed byte (the checksum made right again, as a forger would), another key,
// another address or no MAC at all does not verify; a probe stays the size it was padded to.
TEST(Wire, AuthenticatedPacketsVerifyAndForgeriesDoNot) {
    std::vector<uint8_t> payload(200);
    for (size_t i = 0; i < payload.size(); i++) payload[i] = uint8_t(i * 7);
    ConstBytes part;
    AuthKey raw{}, raw_other{};
    for (size_t i = 0; i < kAuthKeyBytes; i++) raw.bytes[i] = uint8_t(i * 13 + 1), raw_other.bytes[i] = raw.bytes[i];
    raw_other.bytes[31] ^= 1;
    const MacKey key = mac_key(raw), other = mac_key(raw_other);
    for (Message m : every_type(payload, part)) {
        uint8_t buf[2048];
        size_t n = encode(m, kSrc, kDst, buf, sizeof buf, &key);
        ASSERT_GT(n, kHeaderBytes + kMacBytes) << type_name(m.header.type);
        Message d;
        ASSERT_EQ(decode(buf, n, kSrc, kDst, d), DecodeError::kOk) << type_name(m.header.type);
        EXPECT_TRUE(d.header.flags & kFlagAuth);
        if (m.header.type == Type::kProbe) EXPECT_EQ(n + kIpv4HeaderBytes, 1280u);
        for (size_t cut = 1; cut < n; cut += 7) {
            ConstBytes two[2] = {{buf, cut}, {buf + cut, n - cut}};
            ASSERT_TRUE(mac_ok(ConstChain{two, 2}, kSrc, kDst, key)) << type_name(m.header.type) << " cut " << cut;
        }
        const ConstBytes whole{buf, n};
        EXPECT_FALSE(mac_ok(ConstChain{&whole, 1}, kSrc, kDst, other));
        EXPECT_FALSE(mac_ok(ConstChain{&whole, 1}, kSrc, kDst + 1, key));
        for (size_t at : {size_t(0), size_t(8), size_t(20), n / 2, n - kMacBytes - 1, n - 1}) {
            if (at == 4 || at == 5) continue;  // the checksum field itself
            uint8_t forged[2048];
            memcpy(forged, buf, n);
            forged[at] ^= 0x40;
            forged[4] = forged[5] = 0;
            const ConstBytes f{forged, n};
            const uint16_t fixed = checksum(ConstChain{&f, 1}, kSrc, kDst);
            forged[4] = uint8_t(fixed >> 8);
            forged[5] = uint8_t(fixed);
            Message fd;
            if (decode(forged, n, kSrc, kDst, fd) != DecodeError::kOk) continue;  // not even well formed
            EXPECT_FALSE(mac_ok(ConstChain{&f, 1}, kSrc, kDst, key)) << type_name(m.header.type) << " byte " << at;
        }
        m.header.flags = 0;
        n = encode(m, kSrc, kDst, buf, sizeof buf);
        const ConstBytes plain{buf, n};
        EXPECT_FALSE(mac_ok(ConstChain{&plain, 1}, kSrc, kDst, key)) << "no MAC at all";
    }
}

TEST(Wire, ChecksumSameOverAnySplit) {
    std::vector<uint8_t> payload(333, 0x5A);
    ConstBytes part{payload.data(), payload.size()};
    Message m = base(Type::kRequest);
    m.request = Request{1, 1, 1, 333, 333, 0, 0, kNoDeadline};
    m.gather = Gather{ConstChain{&part, 1}, 0, 333};
    uint8_t buf[1024];
    size_t n = encode(m, kSrc, kDst, buf, sizeof buf);
    for (size_t a = 1; a < n; a += 7) {
        for (size_t b = a + 1; b < n; b += 13) {
            ConstBytes parts[3] = {{buf, a}, {buf + a, b - a}, {buf + b, n - b}};
            Message d;
            ASSERT_EQ(decode(ConstChain{parts, 3}, kSrc, kDst, d), DecodeError::kOk) << a << " " << b;
        }
    }
}

// The simple byte-wise definition: big-endian 16-bit words over pseudo-header + packet (the
// checksum field as zero, an odd last byte padded with zero), folded with end-around carry.
uint16_t reference_checksum(const std::vector<uint8_t>& packet, uint32_t src, uint32_t dst) {
    std::vector<uint8_t> all(12);
    store32(all.data(), src);
    store32(all.data() + 4, dst);
    all[9] = kIpProtocol;
    store16(all.data() + 10, uint16_t(packet.size()));
    all.insert(all.end(), packet.begin(), packet.end());
    for (size_t i = 12 + 4; i < 12 + 6 && i < all.size(); i++) all[i] = 0;
    if (all.size() % 2) all.push_back(0);
    uint32_t sum = 0;
    for (size_t i = 0; i < all.size(); i += 2) {
        sum += (uint32_t(all[i]) << 8) | all[i + 1];
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    uint16_t c = uint16_t(~sum);
    return c == 0 ? 0xFFFF : c;
}

// The word-at-a-time checksum against the reference: random bytes, lengths, start addresses
// (any alignment) and splits into up to 6 parts (odd-sized parts carry half a word across).
TEST(Wire, ChecksumMatchesByteWiseReference) {
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    auto next = [&rng] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
    };
    std::vector<uint8_t> backing(4096 + 16);
    for (int round = 0; round < 3000; round++) {
        size_t len = round < 100 ? size_t(round) : size_t(next() % 4096);
        size_t start = size_t(next() % 16);
        // Mostly random bytes; some all-0xFF runs, which stress the end-around carry.
        bool ones = round % 7 == 0;
        for (size_t i = 0; i < len; i++) backing[start + i] = ones ? 0xFF : uint8_t(next());
        const uint8_t* pkt = backing.data() + start;
        std::vector<uint8_t> flat(pkt, pkt + len);
        uint32_t src = uint32_t(next()), dst = uint32_t(next());
        size_t count = 1 + size_t(next() % 6);
        ConstBytes parts[6];
        size_t at = 0;
        for (size_t k = 0; k < count; k++) {
            size_t take = k + 1 == count ? len - at : size_t(next() % (len - at + 1));
            parts[k] = ConstBytes{pkt + at, take};
            at += take;
        }
        ASSERT_EQ(checksum(ConstChain{parts, count}, src, dst), reference_checksum(flat, src, dst))
            << "round " << round << " len " << len << " start " << start << " parts " << count;
    }
}

TEST(Wire, Ipv4HeaderChecksumMatchesReference) {
    // A well-known worked example (192.168.0.1 -> 192.168.0.199, UDP): its checksum is 0xB861.
    const uint8_t header[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                0x00, 0x00, 0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7};
    EXPECT_EQ(ipv4_header_checksum(header, sizeof header), 0xB861);
}

// The IPv4 header checksum's 20-byte path (every other round) and its general one (options, odd
// sizes) against RFC 1071 done by hand, on random headers and start addresses: a header whose
// checksum field holds the result sums to 0.
TEST(Wire, Ipv4HeaderChecksumOfRandomHeadersMatchesReference) {
    uint64_t state = 0x1234567887654321u;
    auto next = [&] {
        state = state * 6364136223846793005u + 1442695040888963407u;
        return uint32_t(state >> 33);
    };
    uint8_t buf[64 + 8];
    for (int round = 0; round < 2000; round++) {
        const size_t len = round % 2 ? 20 : 20 + size_t(next() % 41);  // 20..60: options, odd sizes
        const size_t start = next() % 8;
        uint8_t* h = buf + start;
        for (size_t i = 0; i < len; i++) h[i] = uint8_t(next());
        uint32_t sum = 0;
        for (size_t i = 0; i < len; i += 2) sum += (uint32_t(h[i]) << 8) | (i + 1 < len ? h[i + 1] : 0);
        while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
        ASSERT_EQ(ipv4_header_checksum(h, len), uint16_t(~sum)) << "round " << round << " len " << len;
        if (len % 2 == 0) {
            h[10] = h[11] = 0;
            const uint16_t c = ipv4_header_checksum(h, len);
            h[10] = uint8_t(c >> 8);
            h[11] = uint8_t(c);
            ASSERT_EQ(ipv4_header_checksum(h, len), 0) << "round " << round << " len " << len;
        }
    }
}

// Re-encodes after a mutation so only the intended fault remains (the checksum is fixed up).
DecodeError mutate(Message m, const std::function<void(uint8_t*, size_t&)>& f, bool fix_checksum = true) {
    uint8_t buf[2048];
    size_t n = encode(m, kSrc, kDst, buf, sizeof buf);
    f(buf, n);
    if (fix_checksum && n >= kHeaderBytes) {
        ConstBytes one{buf, n};
        store16(buf + 4, checksum(ConstChain{&one, 1}, kSrc, kDst));
    }
    Message d;
    return decode(buf, n, kSrc, kDst, d);
}

TEST(Wire, EveryMalformedPacketHasItsReason) {
    std::vector<uint8_t> payload(200, 1);
    ConstBytes part;
    auto all = every_type(payload, part);
    Message req = all[2], cancel = all[8], ack = all[7];
    EXPECT_EQ(mutate(req, [](uint8_t*, size_t& n) { n = 10; }, false), DecodeError::kTooShort);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[0] = 2; }), DecodeError::kBadVersion);
    EXPECT_EQ(mutate(req, [](uint8_t*, size_t& n) { n -= 1; }), DecodeError::kBadLength);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[40] ^= 1; }, false), DecodeError::kBadChecksum);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[2] |= 0x20; }), DecodeError::kCriticalFlag);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[2] |= 0x04; }), DecodeError::kOk);  // ignorable
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[1] = 99; }), DecodeError::kUnknownType);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { b[1] = 0; }), DecodeError::kUnknownType);
    EXPECT_EQ(mutate(cancel, [](uint8_t* b, size_t& n) { n -= 2; store16(b + 6, uint16_t(n)); }),
              DecodeError::kBodyTooShort);
    EXPECT_EQ(mutate(cancel, [](uint8_t* b, size_t& n) { b[n] = 0; n += 1; store16(b + 6, uint16_t(n)); }),
              DecodeError::kTrailingBytes);
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { store32(b + 32, 0); }), DecodeError::kBadField);  // txn 0
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { store32(b + 48, 6000); }), DecodeError::kBadField);  // eager > total
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { store32(b + 44, 0x7FFFFFFF); }), DecodeError::kBadField);
    EXPECT_EQ(mutate(ack, [](uint8_t* b, size_t&) { b[32 + 4 + 4] = 9; }), DecodeError::kBadField);  // kind
    EXPECT_EQ(mutate(req, [](uint8_t* b, size_t&) { store64(b + 24, 0); }), DecodeError::kBadField);  // src inc 0
    Message err = all[4];  // REPLY with error app-error
    EXPECT_EQ(mutate(err, [](uint8_t* b, size_t&) { store16(b + 36, 10); }), DecodeError::kBadField);
    EXPECT_EQ(mutate(err, [](uint8_t* b, size_t&) { store16(b + 36, 64); }), DecodeError::kBadField);
    EXPECT_EQ(mutate(err, [](uint8_t* b, size_t&) { store16(b + 36, 9); }), DecodeError::kOk);
    // A CHALLENGE_ACK's open txns lie in [txn low, txn next), at most 64 of them (SPEC 4.11).
    Message ans = all[all.size() - 1];
    ASSERT_EQ(ans.header.type, Type::kChallengeAck);
    EXPECT_EQ(mutate(ans, [](uint8_t*, size_t&) {}), DecodeError::kOk);
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store32(b + 36, 0); }), DecodeError::kBadField);  // low 0
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store32(b + 40, 0); }), DecodeError::kBadField);  // next 0
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store32(b + 36, 4); }), DecodeError::kBadField);  // next before low
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store32(b + 36, 100); store32(b + 40, 165); }),
              DecodeError::kBadField);  // 65 wide
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store32(b + 36, 100); store32(b + 40, 164); store64(b + 48, ~0ull); }),
              DecodeError::kOk);  // 64 wide, all open
    EXPECT_EQ(mutate(ans, [](uint8_t* b, size_t&) { store64(b + 48, 0b10000); }), DecodeError::kBadField);  // at next
    EXPECT_EQ(mutate(all[all.size() - 2], [](uint8_t* b, size_t& n) { b[n] = 0; n += 1; store16(b + 6, uint16_t(n)); }),
              DecodeError::kTrailingBytes);
    // AUTH without room for the MAC.
    Message small = all[8];
    EXPECT_EQ(mutate(small, [](uint8_t* b, size_t&) { b[2] |= kFlagAuth; }), DecodeError::kBodyTooShort);
}

TEST(Wire, PayloadCapacityMatchesMtu) {
    EXPECT_EQ(payload_capacity(1500, kRequestFixedBytes, false), 1500u - 20 - 32 - 32);
    EXPECT_EQ(payload_capacity(1280, kDataFixedBytes, true), 1280u - 20 - 32 - 12 - 16);
    EXPECT_EQ(payload_capacity(40, kDataFixedBytes, false), 0u);
}

}  // namespace
}  // namespace smp::wire
