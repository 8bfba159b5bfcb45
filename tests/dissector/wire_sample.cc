// Random SMP packets for the dissector tests, encoded and then decoded by the engine's own wire
// code (protocol/wire.cc), so that what tshark prints can be compared with what the engine read.
//
//   wire_sample valid N SEED OUT.pcap OUT.jsonl     N random valid packets of every type
//   wire_sample mutated N SEED OUT.pcap OUT.jsonl   N damaged packets and the engine's verdict
//   wire_sample decode IN.pcap OUT.jsonl [KEY]      what the engine decodes in a capture; with
//                                                   a cluster key (64 hex digits), what a keyed
//                                                   receiver makes of each MAC (SPEC 3.4)
//   wire_sample window OUT.pcap                     a short exchange outside the txn window
//
// Each line of OUT.jsonl is one frame: {"frame": n, "fields": {"simplemsg.x": "value", ...}}
// holding every field the engine decoded (or, for damaged packets, its verdict), named as the
// dissector names them. The pcap is Ethernet + IPv4 (protocol 121), one packet per frame.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/wire.h"

namespace {

using namespace smp::wire;
using smp::ConstBytes;
using smp::ConstChain;

constexpr size_t kFrameBytesMax = 14 + 1500;     // Ethernet + a 1500-byte IP packet
constexpr size_t kPayloadBytesMax = 1400;       // keeps every packet under a 1500-byte MTU
constexpr uint32_t kSrcIpv4 = 0x0A4E0001;       // 10.78.0.1 (only written to a file)
constexpr uint32_t kDstIpv4 = 0x0A4E0002;       // 10.78.0.2
constexpr int kSamplesMax = 100000;
// The dissector's verdict for the engine's dropped_auth (not a DecodeError: a keyed receiver's
// drop, after a clean decode, of a packet whose MAC is missing or wrong), and its MAC statuses.
constexpr uint8_t kVerdictDroppedAuth = 254;
constexpr uint8_t kMacBad = 0, kMacGood = 1;

struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t seed) : g(seed) {}
    uint64_t u64() { return g(); }
    uint32_t below(uint32_t n) { return n ? uint32_t(g() % n) : 0; }
    uint32_t range(uint32_t lo, uint32_t hi) { return lo + below(hi - lo + 1); }  // inclusive
    bool chance(uint32_t percent) { return below(100) < percent; }
    // Values that exercise the edges as well as the middle.
    uint32_t u32() {
        switch (below(4)) {
            case 0: return 0;
            case 1: return 0xFFFFFFFFu - below(3);
            case 2: return below(1000);
            default: return uint32_t(g());
        }
    }
};

class Json {
public:
    void add(const char* name, uint64_t v) { put(name, std::to_string(v)); }
    void add_int(const char* name, int64_t v) { put(name, std::to_string(v)); }
    void add_hex(const char* name, const uint8_t* p, size_t n) {
        static const char* kDigits = "0123456789abcdef";
        std::string s;
        for (size_t i = 0; i < n; i++) {
            s += kDigits[p[i] >> 4];
            s += kDigits[p[i] & 15];
        }
        put(name, s);
    }
    void add_str(const char* name, const char* p, size_t n) { put(name, std::string(p, n)); }
    std::string line(int frame) const { return "{\"frame\": " + std::to_string(frame) +
                                               ", \"fields\": {" + body_ + "}}\n"; }

private:
    void put(const char* name, const std::string& v) {
        if (!body_.empty()) body_ += ", ";
        body_ += "\"" + std::string(name) + "\": \"";
        for (char c : v) {
            if (c == '"' || c == '\\') { body_ += '\\'; body_ += c; }
            else if (uint8_t(c) >= 0x80) body_ += "\\ufffd";  // as Wireshark shows ENC_ASCII
            else if (uint8_t(c) < 0x20 || uint8_t(c) == 0x7f) {
                char buf[8];
                snprintf(buf, sizeof buf, "\\u%04x", uint8_t(c));
                body_ += buf;
            } else body_ += c;
        }
        body_ += "\"";
    }
    std::string body_;
};

class PcapWriter {
public:
    explicit PcapWriter(const char* path) : f_(fopen(path, "wb")) {
        if (!f_) { perror(path); exit(2); }
        uint32_t hdr[6] = {0xA1B2C3D4u, 2 | (4u << 16), 0, 0, 65535, 1};
        fwrite(hdr, 1, 24, f_);
    }
    ~PcapWriter() { fclose(f_); }
    // One Ethernet + IPv4 frame around an SMP packet; stamps one millisecond apart.
    void write(const uint8_t* smp, size_t bytes, uint32_t frame, uint32_t src_ip = kSrcIpv4,
               uint32_t dst_ip = kDstIpv4, uint16_t ip_id = 0) {
        uint8_t buf[kFrameBytesMax + 64];
        static const uint8_t kEth[14] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0};
        memcpy(buf, kEth, 14);
        uint8_t* ip = buf + 14;
        size_t total = 20 + bytes;
        ip[0] = 0x45; ip[1] = 0;
        ip[2] = uint8_t(total >> 8); ip[3] = uint8_t(total);
        if (ip_id == 0) ip_id = uint16_t(frame);
        ip[4] = uint8_t(ip_id >> 8); ip[5] = uint8_t(ip_id);  // identification
        ip[6] = 0x40; ip[7] = 0;                                // DF
        ip[8] = 64; ip[9] = kIpProtocol; ip[10] = ip[11] = 0;
        for (int i = 0; i < 4; i++) {
            ip[12 + i] = uint8_t(src_ip >> (24 - 8 * i));
            ip[16 + i] = uint8_t(dst_ip >> (24 - 8 * i));
        }
        uint16_t c = ipv4_header_checksum(ip, 20);
        ip[10] = uint8_t(c >> 8); ip[11] = uint8_t(c);
        memcpy(ip + 20, smp, bytes);
        uint32_t rec[4] = {1700000000u + frame / 1000, (frame % 1000) * 1000,
                           uint32_t(14 + total), uint32_t(14 + total)};
        fwrite(rec, 1, 16, f_);
        fwrite(buf, 1, 14 + total, f_);
    }

private:
    FILE* f_;
};

// A valid `txn low` for `txn`: txn itself, or any txn before it in the cyclic order (SPEC.md
// 5.1), across the wrap too.
uint32_t txn_low_for(Rng& r, uint32_t txn) {
    if (r.chance(30)) return txn;
    for (;;) {
        const uint32_t low = r.u32();
        if (low != 0 && !txn_before(txn, low)) return low;
    }
}

// A random valid message of type t; `payload` holds the bytes REQUEST/REPLY/DATA carry.
void random_message(Rng& r, Type t, Message& m, std::vector<uint8_t>& payload, ConstBytes& src) {
    m = Message{};
    m.header.type = t;
    uint8_t flags = 0;
    if (r.chance(20)) flags |= kFlagRetransmission;
    if (r.chance(10)) flags |= uint8_t(r.range(1, 7) << 1);  // ignorable bits
    // A PROBE's padding is sized to an IP length that a MAC would overrun: no AUTH there.
    if (r.chance(10) && t != Type::kProbe) flags |= kFlagAuth;
    m.header.flags = flags;
    m.header.priority = uint8_t(r.below(256));
    m.header.dst_endpoint = uint16_t(r.chance(50) ? 0 : r.below(65536));
    m.header.src_endpoint = uint16_t(r.chance(50) ? 1 : r.below(65536));
    m.header.ack = r.chance(50) ? 0 : r.range(1, 0xFFFFFFFFu);
    m.header.dst_incarnation = r.chance(10) ? 0 : r.u64();
    m.header.src_incarnation = r.u64() | 1;  // never 0
    size_t cap = payload_capacity(1500, 32, flags & kFlagAuth);
    auto make_payload = [&](uint32_t n) {
        payload.resize(n);
        for (auto& b : payload) b = uint8_t(r.below(256));
        src = ConstBytes{payload.data(), payload.size()};
        m.gather = Gather{ConstChain{&src, 1}, 0, n};
    };
    switch (t) {
        case Type::kHello:
        case Type::kHelloAck:
            m.hello = Hello{r.u32(), uint16_t(r.below(65)), uint16_t(r.range(kMtuMin, 65535)),
                            r.range(0, kMessageBytesMax), r.u32(), r.range(0, kMessageBytesMax)};
            break;
        case Type::kRequest: {
            Request& q = m.request;
            q = Request{};
            q.txn = r.range(1, 0xFFFFFFFFu);
            q.txn_low = txn_low_for(r, q.txn);
            q.channel = r.u32();
            q.total_bytes = r.chance(30) ? r.below(kPayloadBytesMax) : r.range(0, kMessageBytesMax);
            q.eager_bytes = r.chance(20) ? 0 : r.range(0, q.total_bytes);
            uint32_t n = 0;
            if (q.eager_bytes > 0) {
                n = r.range(1, uint32_t(q.eager_bytes < cap ? q.eager_bytes : cap));
                q.offset = r.range(0, q.eager_bytes - n);
            } else {
                q.offset = 0;
            }
            q.reply_bytes_max = r.range(0, kMessageBytesMax);
            q.deadline_us = r.chance(30) ? kNoDeadline : r.u32();
            make_payload(n);
            break;
        }
        case Type::kReply: {
            Reply& p = m.reply;
            p = Reply{};
            p.txn = r.range(1, 0xFFFFFFFFu);
            p.error = r.chance(60) ? ErrorCode::kOk : ErrorCode(r.range(1, 9));
            p.status = r.u32();
            uint32_t n = 0;
            if (p.error == ErrorCode::kOk) {
                p.total_bytes = r.chance(40) ? r.below(kPayloadBytesMax) : r.range(0, kMessageBytesMax);
                p.eager_bytes = r.range(0, p.total_bytes);
                if (p.eager_bytes > 0) {
                    n = r.range(1, uint32_t(p.eager_bytes < cap ? p.eager_bytes : cap));
                    p.offset = r.range(0, p.eager_bytes - n);
                }
            }
            make_payload(n);
            break;
        }
        case Type::kPull: {
            Pull& p = m.pull;
            p.txn = r.range(1, 0xFFFFFFFFu);
            p.what = r.chance(50) ? DataKind::kRequest : DataKind::kReply;
            p.count = uint8_t(r.range(1, kPullRangesMax));
            for (size_t i = 0; i < p.count; i++) {
                p.ranges[i].offset = r.range(0, kMessageBytesMax - 1);
                p.ranges[i].bytes = r.range(1, kMessageBytesMax - p.ranges[i].offset);
            }
            break;
        }
        case Type::kData: {
            Data& d = m.data;
            d.txn = r.range(1, 0xFFFFFFFFu);
            d.what = r.chance(50) ? DataKind::kRequest : DataKind::kReply;
            uint32_t n = r.range(1, uint32_t(cap));
            d.offset = r.range(0, kMessageBytesMax - n);
            make_payload(n);
            break;
        }
        case Type::kAck:
            m.ack.count = uint16_t(r.range(1, kAckEntriesMax));
            for (size_t i = 0; i < m.ack.count; i++)
                m.ack.entries[i] = AckEntry{r.range(1, 0xFFFFFFFFu), AckKind(r.range(1, 4))};
            break;
        case Type::kCancel:
            m.cancel = Cancel{r.range(1, 0xFFFFFFFFu),
                              r.chance(50) ? ErrorCode::kCancelled : ErrorCode::kTimedOut};
            break;
        case Type::kPulse: {
            uint32_t txn = r.range(1, 0xFFFFFFFFu);
            m.pulse = Pulse{txn, txn_low_for(r, txn), r.u32(), int8_t(r.below(256)), r.u32(),
                            uint16_t(r.below(65536))};
            break;
        }
        case Type::kProbe: {
            uint16_t pad = uint16_t(r.range(kIpv4HeaderBytes + kHeaderBytes + kProbeFixedBytes +
                                            ((flags & kFlagAuth) ? kMacBytes : 0), 1500));
            m.pad_to_bytes = pad;
            m.probe = Probe{r.u32(), pad};
            break;
        }
        case Type::kProbeAck:
            m.probe = Probe{r.u32(), uint16_t(r.range(kIpv4HeaderBytes + kHeaderBytes + kProbeFixedBytes,
                                                     r.chance(50) ? 100 : 65535))};
            break;
        case Type::kReset:
            m.reset = Reset{r.u64(), r.chance(50) ? ResetReason::kUnknownIncarnation : ResetReason::kNoPeerSlot};
            break;
        case Type::kNameQuery:
        case Type::kNameReply: {
            Name& n = m.name;
            n.query = r.u32();
            n.error = (t == Type::kNameReply && r.chance(30)) ? ErrorCode::kNoSuchService
                                                              : ErrorCode::kOk;
            n.channel = t == Type::kNameReply ? r.u32() : 0;
            n.name_bytes = uint8_t(r.range(1, kNameBytesMax));
            static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789-_./";
            for (size_t i = 0; i < n.name_bytes; i++) n.name[i] = kChars[r.below(sizeof kChars - 1)];
            break;
        }
        case Type::kChallenge:
            m.challenge = Challenge{r.u32()};
            break;
        case Type::kChallengeAck: {
            // open txns within [txn low, txn next), at most 64 steps (SPEC 4.11), across the wrap too
            ChallengeAck& a = m.challenge_ack;
            a.nonce = r.u32();
            a.txn_low = r.range(1, 0xFFFFFFFFu);
            const uint32_t span = r.chance(20) ? 64 : r.below(65);
            a.txn_next = a.txn_low;
            for (uint32_t i = 0; i < span; i++) a.txn_next = txn_next(a.txn_next);
            a.open = span == 0 ? 0 : r.u64() & (span >= 64 ? ~0ull : (1ull << span) - 1);
            break;
        }
    }
}

// Every field the engine decoded, under the dissector's names.
void describe(const Message& m, const uint8_t* pkt, Json& j, uint8_t verdict = 0) {
    const Header& h = m.header;
    j.add("simplemsg.version", h.version);
    j.add("simplemsg.type", uint8_t(h.type));
    j.add("simplemsg.flags", h.flags);
    j.add("simplemsg.priority", h.priority);
    j.add("simplemsg.checksum", h.checksum);
    j.add("simplemsg.length", h.length);
    j.add("simplemsg.dst_endpoint", h.dst_endpoint);
    j.add("simplemsg.src_endpoint", h.src_endpoint);
    j.add("simplemsg.ack", h.ack);
    j.add("simplemsg.dst_incarnation", h.dst_incarnation);
    j.add("simplemsg.src_incarnation", h.src_incarnation);
    j.add("simplemsg.verdict", verdict);
    std::string ranges_off, ranges_len, kinds, txns;
    switch (h.type) {
        case Type::kHello:
        case Type::kHelloAck:
            j.add("simplemsg.window_bytes", m.hello.window_bytes);
            j.add("simplemsg.window_txns", m.hello.window_txns);
            j.add("simplemsg.mtu", m.hello.mtu);
            j.add("simplemsg.message_bytes_max", m.hello.message_bytes_max);
            j.add("simplemsg.nonce", m.hello.nonce);
            j.add("simplemsg.eager_bytes_max", m.hello.eager_bytes_max);
            break;
        case Type::kRequest:
            j.add("simplemsg.txn", m.request.txn);
            j.add("simplemsg.txn_low", m.request.txn_low);
            j.add("simplemsg.channel", m.request.channel);
            j.add("simplemsg.total_bytes", m.request.total_bytes);
            j.add("simplemsg.eager_bytes", m.request.eager_bytes);
            j.add("simplemsg.offset", m.request.offset);
            j.add("simplemsg.reply_bytes_max", m.request.reply_bytes_max);
            j.add("simplemsg.deadline_us", m.request.deadline_us);
            break;
        case Type::kReply:
            j.add("simplemsg.txn", m.reply.txn);
            j.add("simplemsg.error", uint16_t(m.reply.error));
            j.add("simplemsg.status", m.reply.status);
            j.add("simplemsg.total_bytes", m.reply.total_bytes);
            j.add("simplemsg.eager_bytes", m.reply.eager_bytes);
            j.add("simplemsg.offset", m.reply.offset);
            break;
        case Type::kPull:
            j.add("simplemsg.txn", m.pull.txn);
            j.add("simplemsg.what", uint8_t(m.pull.what));
            j.add("simplemsg.ranges", m.pull.count);
            for (size_t i = 0; i < m.pull.count; i++) {
                ranges_off += (i ? "," : "") + std::to_string(m.pull.ranges[i].offset);
                ranges_len += (i ? "," : "") + std::to_string(m.pull.ranges[i].bytes);
            }
            j.add_str("simplemsg.range.offset", ranges_off.data(), ranges_off.size());
            j.add_str("simplemsg.range.bytes", ranges_len.data(), ranges_len.size());
            break;
        case Type::kData:
            j.add("simplemsg.txn", m.data.txn);
            j.add("simplemsg.what", uint8_t(m.data.what));
            j.add("simplemsg.offset", m.data.offset);
            break;
        case Type::kAck:
            j.add("simplemsg.ack_entries", m.ack.count);
            for (size_t i = 0; i < m.ack.count; i++) {
                txns += (i ? "," : "") + std::to_string(m.ack.entries[i].txn);
                kinds += (i ? "," : "") + std::to_string(uint8_t(m.ack.entries[i].kind));
            }
            j.add_str("simplemsg.ack_entry.txn", txns.data(), txns.size());
            j.add_str("simplemsg.ack_entry.kind", kinds.data(), kinds.size());
            break;
        case Type::kCancel:
            j.add("simplemsg.txn", m.cancel.txn);
            j.add("simplemsg.cancel_reason", uint16_t(m.cancel.reason));
            break;
        case Type::kPulse:
            j.add("simplemsg.txn", m.pulse.txn);
            j.add("simplemsg.txn_low", m.pulse.txn_low);
            j.add("simplemsg.channel", m.pulse.channel);
            j.add_int("simplemsg.pulse_code", m.pulse.code);
            j.add("simplemsg.pulse_value", m.pulse.value);
            j.add("simplemsg.pulse_source", m.pulse.source);
            break;
        case Type::kProbe:
        case Type::kProbeAck:
            j.add("simplemsg.probe_seq", m.probe.seq);
            j.add("simplemsg.probe_bytes", m.probe.probe_bytes);
            break;
        case Type::kReset:
            j.add("simplemsg.named_incarnation", m.reset.named_incarnation);
            j.add("simplemsg.reset_reason", uint16_t(m.reset.reason));
            break;
        case Type::kNameQuery:
        case Type::kNameReply:
            j.add("simplemsg.query", m.name.query);
            j.add("simplemsg.error", uint16_t(m.name.error));
            j.add("simplemsg.name_bytes", m.name.name_bytes);
            j.add("simplemsg.channel", m.name.channel);
            j.add_str("simplemsg.service", m.name.name, m.name.name_bytes);
            break;
        case Type::kChallenge:
            j.add("simplemsg.nonce", m.challenge.nonce);
            break;
        case Type::kChallengeAck:
            j.add("simplemsg.nonce", m.challenge_ack.nonce);
            j.add("simplemsg.txn_low", m.challenge_ack.txn_low);
            j.add("simplemsg.txn_next", m.challenge_ack.txn_next);
            j.add("simplemsg.open_txns", m.challenge_ack.open);
            break;
    }
    if (m.payload.bytes && h.type != Type::kProbe) {
        j.add_hex("simplemsg.payload", pkt + m.payload.offset, m.payload.bytes);
        j.add("simplemsg.payload_bytes", m.payload.bytes);
    }
}

void fix_checksum(uint8_t* pkt, size_t n) {
    ConstBytes one{pkt, n};
    uint16_t c = checksum(ConstChain{&one, 1}, kSrcIpv4, kDstIpv4);
    pkt[4] = uint8_t(c >> 8);
    pkt[5] = uint8_t(c);
}

// Damages a valid packet the ways a receiver meets them; returns the new size.
size_t mutate(Rng& r, uint8_t* pkt, size_t n, size_t cap) {
    switch (r.below(6)) {
        case 0:  // a flipped bit, checksum left alone: bad-checksum (or bad-version, -length)
            pkt[r.below(uint32_t(n))] ^= uint8_t(1u << r.below(8));
            return n;
        case 1:  // a random byte in the header or fixed body, checksum fixed
        case 2: {
            size_t at = r.below(uint32_t(n < 64 ? n : 64));
            if (at == 4 || at == 5) at = 1;
            pkt[at] = uint8_t(r.below(256));
            fix_checksum(pkt, n);
            return n;
        }
        case 3: {  // cut short, length and checksum fixed: body-too-short or bad-field
            size_t m = r.range(32, uint32_t(n));
            pkt[6] = uint8_t(m >> 8); pkt[7] = uint8_t(m);
            fix_checksum(pkt, m);
            return m;
        }
        case 4: {  // extra bytes, length and checksum fixed: trailing-bytes (or a longer payload)
            size_t m = n + r.range(1, 8);
            if (m > cap) m = cap;
            for (size_t i = n; i < m; i++) pkt[i] = uint8_t(r.below(256));
            pkt[6] = uint8_t(m >> 8); pkt[7] = uint8_t(m);
            fix_checksum(pkt, m);
            return m;
        }
        default: {  // length field disagrees with the IP payload: bad-length
            uint16_t len = uint16_t((pkt[6] << 8 | pkt[7]) + r.range(1, 100));
            pkt[6] = uint8_t(len >> 8); pkt[7] = uint8_t(len);
            fix_checksum(pkt, n);
            return n;
        }
    }
}

// A short exchange that steps outside the transaction window (SPEC 4.1, 4.2): the server grants
// 4 transactions, the client sends txn 5 with txn_low 1 (too far ahead), then, having declared
// everything below 4 finished, a new txn 2 (behind); the server answers it "stale". A network copy
// of an early packet is not out of window. Out-of-window frames: 3 and 5 (6 answers 5 stale). Frame 8, a REQUEST
// naming destination incarnation 0 (the receiver drops it: only HELLO, PROBE and NAME_QUERY may),
// is flagged as such and not tracked.
int window_capture(const char* path) {
    PcapWriter pcap(path);
    constexpr uint64_t kIncA = 0xA1A1A1A1A1A1A1A1ull, kIncB = 0xB2B2B2B2B2B2B2B2ull;
    uint8_t pkt[kPacketBytesMax];
    uint32_t frame = 0;
    uint16_t ip_id = 100;
    auto header = [&](Message& m, Type t, bool from_a) {
        m = Message{};
        m.header.type = t;
        m.header.src_endpoint = from_a ? 1 : 0;
        m.header.dst_endpoint = from_a ? 0 : 1;
        m.header.src_incarnation = from_a ? kIncA : kIncB;
        m.header.dst_incarnation = from_a ? kIncB : kIncA;
    };
    auto emit = [&](Message& m, bool from_a, uint16_t id) {
        uint32_t src = from_a ? kSrcIpv4 : kDstIpv4, dst = from_a ? kDstIpv4 : kSrcIpv4;
        size_t n = encode(m, src, dst, pkt, sizeof pkt);
        if (n == 0) { fprintf(stderr, "wire_sample: window: encode failed\n"); exit(1); }
        pcap.write(pkt, n, frame++, src, dst, id);
        return n;
    };
    Message m;
    header(m, Type::kHello, false);                       // 1: B grants A 4 transactions
    m.header.dst_incarnation = 0;                         //    (a HELLO may not know A yet)
    m.hello = Hello{32768, 4, 1500, kMessageBytesMax, 77, 8192};
    emit(m, false, ip_id++);
    auto request = [&](uint32_t txn, uint32_t low) {
        header(m, Type::kRequest, true);
        m.request = Request{txn, low, 5, 0, 0, 0, 64, kNoDeadline};
        return emit(m, true, ip_id++);
    };
    request(1, 1);                                         // 2: in the window
    request(5, 1);                                         // 3: 5 >= 1 + 4: ahead of the window
    request(4, 4);                                         // 4: in the window; 1..3 finished
    request(2, 2);                                         // 5: a new txn below txn_low 4
    header(m, Type::kReply, false);                        // 6: the server says so
    m.reply = Reply{2, ErrorCode::kStale, 0, 0, 0, 0, 0};
    emit(m, false, ip_id++);
    header(m, Type::kRequest, true);                       // 7: a network copy of frame 2
    m.request = Request{1, 1, 5, 0, 0, 0, 64, kNoDeadline};
    emit(m, true, 101);
    header(m, Type::kRequest, true);                       // 8: to no incarnation
    m.header.dst_incarnation = 0;
    m.request = Request{9, 9, 5, 0, 0, 0, 64, kNoDeadline};
    emit(m, true, ip_id++);
    return 0;
}

int usage() {
    fprintf(stderr, "usage: wire_sample valid|mutated N SEED OUT.pcap OUT.jsonl\n"
                    "       wire_sample decode IN.pcap OUT.jsonl [KEY (64 hex digits)]\n");
    return 2;
}

uint32_t get32(const uint8_t* p, bool swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

// Decodes every IPv4 protocol-121 packet of a classic pcap (Ethernet or raw IPv4) with the
// engine's decoder; other frames get an empty row, so rows and tshark's frames line up.
int decode_capture(const char* in_path, const char* out_path, const AuthKey* key) {
    FILE* in = fopen(in_path, "rb");
    if (!in) { perror(in_path); return 2; }
    uint8_t gh[24];
    if (fread(gh, 1, 24, in) != 24) { fprintf(stderr, "%s: no pcap header\n", in_path); return 2; }
    uint32_t magic;
    memcpy(&magic, gh, 4);
    bool swap = magic == 0xD4C3B2A1u || magic == 0x4D3CB2A1u;
    if (!swap && magic != 0xA1B2C3D4u && magic != 0xA1B23C4Du) {
        fprintf(stderr, "%s: not a classic pcap file (pcapng? convert with editcap -F pcap)\n", in_path);
        return 2;
    }
    uint32_t linktype = get32(gh + 20, swap) & 0xFFFF;
    size_t l2 = linktype == 1 ? 14 : (linktype == 101 || linktype == 228) ? 0 :
                linktype == 113 ? 16 : SIZE_MAX;
    if (l2 == SIZE_MAX) { fprintf(stderr, "%s: link type %u not handled\n", in_path, linktype); return 2; }
    FILE* out = fopen(out_path, "w");
    if (!out) { perror(out_path); return 2; }
    std::vector<uint8_t> frame;
    uint8_t rh[16];
    int n = 0, smp = 0;
    constexpr uint32_t kFrameCapBytes = 262144;
    while (fread(rh, 1, 16, in) == 16) {
        uint32_t incl = get32(rh + 8, swap);
        if (incl > kFrameCapBytes) { fprintf(stderr, "%s: frame %d too large\n", in_path, n + 1); return 2; }
        frame.resize(incl);
        if (fread(frame.data(), 1, incl, in) != incl) break;
        n++;
        Json j;
        const uint8_t* ip = frame.data() + l2;
        bool is_ip = incl >= l2 + 20 &&
                     (linktype != 1 || (frame[12] == 0x08 && frame[13] == 0x00)) &&
                     (linktype != 113 || (frame[14] == 0x08 && frame[15] == 0x00)) &&
                     (ip[0] >> 4) == 4;
        if (is_ip && ip[9] == kIpProtocol) {
            size_t ihl = size_t(ip[0] & 15) * 4;
            size_t total = size_t(ip[2]) << 8 | ip[3];
            bool fragment = ((ip[6] & 0x3F) | ip[7]) != 0;
            if (ihl >= 20 && total >= ihl && l2 + total <= incl && !fragment) {
                uint32_t src = smp::load32(ip + 12), dst = smp::load32(ip + 16);
                Message d;
                DecodeError e = decode(ip + ihl, total - ihl, src, dst, d);
                if (e != DecodeError::kOk) {
                    j.add("simplemsg.verdict", uint8_t(e));
                } else if (!key) {
                    describe(d, ip + ihl, j);
                } else {
                    // As Engine::handle_datagram: with a key, nothing without the right MAC.
                    const ConstBytes one{ip + ihl, total - ihl};
                    const bool good = mac_ok(ConstChain{&one, 1}, src, dst, mac_key(*key));
                    describe(d, ip + ihl, j, good ? 0 : kVerdictDroppedAuth);
                    if (d.header.flags & kFlagAuth) j.add("simplemsg.mac.status", good ? kMacGood : kMacBad);
                }
                smp++;
            }
        }
        std::string line = j.line(n);
        if (is_ip) {
            // Identity of the IP packet on the wire: a copy the network made has the same one.
            uint64_t h = 1469598103934665603ull;
            auto mix = [&h](const uint8_t* p, size_t k) {
                for (size_t i = 0; i < k; i++) h = (h ^ p[i]) * 1099511628211ull;
            };
            mix(ip + 4, 2);    // identification
            mix(ip + 12, 8);   // addresses
            mix(ip + 20, incl - l2 - 20);
            char buf[64];
            snprintf(buf, sizeof buf, ", \"wire\": \"%016llx\", \"ip_id\": %u}\n",
                     (unsigned long long)h, unsigned(ip[4] << 8 | ip[5]));
            line = line.substr(0, line.size() - 2) + buf;
        }
        fputs(line.c_str(), out);
    }
    fclose(out);
    fclose(in);
    fprintf(stderr, "%d frames, %d SMP packets decoded\n", n, smp);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "decode") == 0) {
        AuthKey key{};
        if (argc == 5) {
            const char* hex = argv[4];
            if (strlen(hex) != 2 * kAuthKeyBytes) return usage();
            for (size_t i = 0; i < kAuthKeyBytes; i++) {
                unsigned v = 0;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1) return usage();
                key.bytes[i] = uint8_t(v);
            }
        }
        return decode_capture(argv[2], argv[3], argc == 5 ? &key : nullptr);
    }
    if (argc == 3 && strcmp(argv[1], "window") == 0) return window_capture(argv[2]);
    if (argc != 6) return usage();
    bool mutated = strcmp(argv[1], "mutated") == 0;
    if (!mutated && strcmp(argv[1], "valid") != 0) return usage();
    int count = atoi(argv[2]);
    if (count <= 0 || count > kSamplesMax) {
        fprintf(stderr, "wire_sample: N must be 1..%d\n", kSamplesMax);
        return 2;
    }
    Rng r(strtoull(argv[3], nullptr, 10));
    PcapWriter pcap(argv[4]);
    FILE* out = fopen(argv[5], "w");
    if (!out) { perror(argv[5]); return 2; }
    std::vector<uint8_t> payload;
    int per_verdict[int(DecodeError::kCount)] = {};
    for (int i = 0; i < count; i++) {
        // Every type in turn, so N >= kTypeMax covers them all.
        Type t = Type(1 + i % kTypeMax);
        Message m;
        ConstBytes src{nullptr, 0};
        random_message(r, t, m, payload, src);
        uint8_t pkt[kPacketBytesMax];
        size_t n = encode(m, kSrcIpv4, kDstIpv4, pkt, 1500 - kIpv4HeaderBytes);
        if (n == 0) {
            fprintf(stderr, "wire_sample: encode failed for a %s (generator bug)\n", type_name(t));
            return 1;
        }
        if (mutated) n = mutate(r, pkt, n, 1500 - kIpv4HeaderBytes);
        Message d;
        DecodeError e = decode(pkt, n, kSrcIpv4, kDstIpv4, d);
        per_verdict[int(e)]++;
        Json j;
        if (e == DecodeError::kOk) {
            describe(d, pkt, j);
        } else if (!mutated) {
            fprintf(stderr, "wire_sample: the engine rejects its own %s: %s\n", type_name(t),
                    decode_error_name(e));
            return 1;
        } else {
            j.add("simplemsg.verdict", uint8_t(e));
            j.add("simplemsg.length", uint16_t(pkt[6] << 8 | pkt[7]));
        }
        pcap.write(pkt, n, uint32_t(i));
        fputs(j.line(i + 1).c_str(), out);
    }
    fclose(out);
    for (int v = 0; v < int(DecodeError::kCount); v++)
        if (per_verdict[v]) fprintf(stderr, "%s=%d ", decode_error_name(DecodeError(v)), per_verdict[v]);
    fprintf(stderr, "\n");
    return 0;
}
