// The Simple Message Protocol's wire format: every message type, encoded and decoded.
// protocol/SPEC.md is the single source of truth; the static_asserts in wire.cc tie the constants
// below to the numbers written there. Nothing here allocates, does I/O or reads a clock.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "protocol/bytes.h"

namespace smp::wire {

// ---- Constants (SPEC.md section 3) -----------------------------------------------------------
constexpr uint8_t kIpProtocol = 121;        // IANA: "SMP, Simple Message Protocol"
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;
constexpr size_t kIpv4HeaderBytes = 20;     // we never send IP options
constexpr size_t kMacBytes = 16;            // authentication trailer (flag kFlagAuth)
constexpr uint32_t kMessageBytesMax = 16u * 1024 * 1024;  // largest request or reply
constexpr size_t kPullRangesMax = 8;
constexpr size_t kAckEntriesMax = 32;
constexpr size_t kNameBytesMax = 32;
constexpr uint32_t kNoDeadline = 0xFFFFFFFFu;  // deadline_us value meaning "none"
constexpr uint16_t kMtuMin = 576;          // IPv4 minimum; the smallest path the protocol accepts
constexpr uint16_t kPacketBytesMax = 65535;

// Transaction numbers (SPEC.md 5.1) run 1, 2, ..., 2^32-1, 1, ...: 0 is never a txn, and every
// comparison is cyclic, so the numbering wraps without a stop. Windows (at most 64 txns) and
// txns outstanding stay far below half the cycle, which keeps the order unambiguous.
constexpr uint32_t txn_next(uint32_t t) { return t == 0xFFFFFFFFu ? 1u : t + 1u; }
// Steps forward from `from` to `to` (the skipped 0 not counted).
constexpr uint32_t txn_dist(uint32_t from, uint32_t to) { return to >= from ? to - from : to - from - 1u; }
// `a` comes before `b`.
constexpr bool txn_before(uint32_t a, uint32_t b) {
    return txn_dist(a, b) != 0 && txn_dist(a, b) < 0x80000000u;
}
static_assert(txn_next(0xFFFFFFFFu) == 1 && txn_dist(0xFFFFFFFFu, 1) == 1 && txn_before(0xFFFFFFF0u, 3) &&
              !txn_before(3, 0xFFFFFFF0u) && !txn_before(7, 7));

// Header flags. Bits in kFlagsCritical must be understood: a receiver drops the packet if one it
// does not know is set. Bits in kFlagsIgnorable may be ignored.
constexpr uint8_t kFlagRetransmission = 0x01;  // informative: this packet repeats an earlier one
constexpr uint8_t kFlagsIgnorable = 0x0E;      // reserved, send 0, ignore on receipt
constexpr uint8_t kFlagsCritical = 0x70;       // reserved, send 0, drop on receipt
constexpr uint8_t kFlagAuth = 0x80;            // a kMacBytes keyed MAC ends the packet

enum class Type : uint8_t {
    kHello = 1,
    kHelloAck = 2,
    kRequest = 3,
    kReply = 4,
    kPull = 5,
    kData = 6,
    kAck = 7,
    kCancel = 8,
    kPulse = 9,
    kProbe = 10,
    kProbeAck = 11,
    kReset = 12,
    kNameQuery = 13,
    kNameReply = 14,
    kChallenge = 15,
    kChallengeAck = 16,
};
constexpr uint8_t kTypeMax = 16;

// Outcome codes carried on the wire (REPLY.error, CANCEL.reason, NAME_REPLY.error) and reported
// locally by the engine. 0 is success. Codes >= 64 never appear on the wire (local only).
enum class ErrorCode : uint16_t {
    kOk = 0,
    kNoSuchChannel = 1,   // no channel with that number on the server endpoint
    kTooLarge = 2,        // request larger than the server accepts
    kBusy = 3,            // no credit or record free now: NOT final, the sender retries later
    kCancelled = 4,       // the sender cancelled
    kTimedOut = 5,        // the deadline passed
    kAppError = 6,        // the server answered with error(); REPLY.status holds its code
    kStale = 7,           // transaction number outside the server's window
    kNoSuchService = 8,   // name unknown
    kServerGone = 9,      // the server endpoint dropped the request (channel closed)
    // local only
    kHostDown = 64,       // the peer stopped answering within the liveness bound
    kPeerRebooted = 65,   // the peer has a new incarnation: old transactions are gone
    kNoResources = 66,    // a local table is full (sends, peers, pulses, lookups)
    kInvalid = 67,        // bad argument or handle
    kTruncated = 68,      // informative: reply larger than the reply buffer, cut
};

enum class AckKind : uint8_t {
    kRequestReceived = 1,  // server -> client: request complete at the server, being served
    kReplyReceived = 2,    // client -> server: reply (or error reply) completely received
    kCancelReceived = 3,   // server -> client: CANCEL processed
    kPulseReceived = 4,    // server -> client: pulse delivered
};

enum class DataKind : uint8_t {
    kRequest = 1,  // bytes of a request (pulled by the server from the client)
    kReply = 2,    // bytes of a reply (pulled by the client from the server)
};

enum class ResetReason : uint16_t {
    kUnknownIncarnation = 1,  // the packet named an incarnation of mine that no longer exists
    kNoPeerSlot = 2,          // my peer table has no room for you now: alive, try again later
};

// Why a packet was rejected. Every malformed packet maps to exactly one reason (counted).
enum class DecodeError : uint8_t {
    kOk = 0,
    kTooShort,          // shorter than the header
    kBadVersion,        // version != kVersion
    kBadLength,         // header length disagrees with the datagram's size
    kBadChecksum,
    kCriticalFlag,      // unknown critical flag set
    kUnknownType,
    kBodyTooShort,      // shorter than the type's fixed body (or the MAC trailer)
    kTrailingBytes,     // a type without payload carries extra bytes
    kBadField,          // a field's value is impossible (zero txn, offset past size, ...)
    kCount,
};
const char* decode_error_name(DecodeError e);
const char* type_name(Type t);
const char* error_code_name(ErrorCode e);

// ---- Header and bodies -----------------------------------------------------------------------
struct Header {
    uint8_t version = kVersion;
    Type type = Type::kHello;
    uint8_t flags = 0;
    uint8_t priority = 0;         // the sender's priority, 0 (lowest) .. 255
    uint16_t checksum = 0;        // filled by encode, verified by decode
    uint16_t length = 0;          // whole SMP packet: header + body + payload + MAC
    uint16_t dst_endpoint = 0;
    uint16_t src_endpoint = 0;
    uint32_t ack = 0;             // piggybacked kReplyReceived for this txn (0 = none)
    uint64_t dst_incarnation = 0; // 0 = "whoever is there" (HELLO, PROBE, NAME_QUERY only)
    uint64_t src_incarnation = 0;
};

// Where payload bytes of a decoded packet are: [offset, offset+bytes) of the datagram chain.
struct Payload {
    uint32_t offset = 0;
    uint32_t bytes = 0;
};

// Where payload bytes to encode come from: `bytes` bytes from `offset` of chain `source`.
struct Gather {
    ConstChain source{nullptr, 0};
    size_t offset = 0;
    size_t bytes = 0;
};

struct Hello {  // HELLO and HELLO_ACK
    uint32_t window_bytes;       // eager bytes the receiver of this packet may have outstanding
    uint16_t window_txns;        // transactions it may have outstanding
    uint16_t mtu;                // largest IP packet the sender can receive
    uint32_t message_bytes_max;  // largest message the sender accepts
    uint32_t nonce;              // HELLO: random; HELLO_ACK: echoes the HELLO's
    uint32_t eager_bytes_max;    // largest eager part of a request the sender keeps
};

struct Request {
    uint32_t txn;
    uint32_t txn_low;            // every txn below this one is finished at the client
    uint32_t channel;
    uint32_t total_bytes;        // whole message
    uint32_t eager_bytes;        // [0, eager_bytes) travel in REQUEST packets; the rest is pulled
    uint32_t offset;             // of this packet's payload
    uint32_t reply_bytes_max;    // the client's reply buffer
    uint32_t deadline_us;        // time remaining when sent; kNoDeadline = none
};

struct Reply {
    uint32_t txn;
    ErrorCode error;             // kOk: a reply; otherwise the transaction failed
    uint16_t reserved;
    uint32_t status;             // reply(): the server's status; kAppError: its error code
    uint32_t total_bytes;
    uint32_t eager_bytes;
    uint32_t offset;
};

struct Range {
    uint32_t offset;
    uint32_t bytes;
};

struct Pull {
    uint32_t txn;
    DataKind what;
    uint8_t count;               // 1 .. kPullRangesMax
    Range ranges[kPullRangesMax];
};

struct Data {
    uint32_t txn;
    DataKind what;
    uint32_t offset;
};

struct AckEntry {
    uint32_t txn;
    AckKind kind;
};

struct Ack {
    uint16_t count;              // 1 .. kAckEntriesMax
    AckEntry entries[kAckEntriesMax];
};

struct Cancel {
    uint32_t txn;
    ErrorCode reason;            // kCancelled or kTimedOut
};

struct Pulse {
    uint32_t txn;
    uint32_t txn_low;
    uint32_t channel;
    int8_t code;
    uint32_t value;
    uint16_t source = 0;  // the sender's connection (0: none given); SPEC.md 4.7
};

struct Probe {  // PROBE and PROBE_ACK
    uint32_t seq;
    uint16_t probe_bytes;        // IP packet size the PROBE was padded to
};

struct Reset {
    uint64_t named_incarnation;  // the incarnation the offending packet named
    ResetReason reason;
};

// With a key (SPEC.md 3.4): a server that does not know a client's numbering asks for it with a
// fresh nonce before it takes a request or pulse; the answer echoes the nonce.
struct Challenge {
    uint32_t nonce;
};

struct ChallengeAck {
    uint32_t nonce;              // the CHALLENGE's, echoed
    uint32_t txn_low;            // as a REQUEST's: every txn before it is finished at the sender
    uint32_t txn_next;           // the number of the sender's next transaction toward the receiver
    uint64_t open;               // bit i: txn_low + i is open at the sender, not yet acknowledged
};

struct Name {  // NAME_QUERY and NAME_REPLY
    uint32_t query;
    ErrorCode error;             // NAME_REPLY: kOk or kNoSuchService
    uint32_t channel;            // NAME_REPLY: the channel the name is attached to
    uint8_t name_bytes;          // 1 .. kNameBytesMax
    char name[kNameBytesMax];
};

struct Message {
    Header header;
    union {
        Hello hello;
        Request request;
        Reply reply;
        Pull pull;
        Data data;
        Ack ack;
        Cancel cancel;
        Pulse pulse;
        Probe probe;
        Reset reset;
        Name name;
        Challenge challenge;
        ChallengeAck challenge_ack;
    };
    Payload payload;             // decode: REQUEST/REPLY/DATA payload (PROBE: padding)
    Gather gather;               // encode: REQUEST/REPLY/DATA payload source
    uint16_t pad_to_bytes = 0;   // encode PROBE: pad the IP packet to this size

    Message() : hello{} {}
};

// Fixed body sizes (after the header), SPEC.md section 4.
constexpr size_t kHelloBytes = 20;
constexpr size_t kRequestFixedBytes = 32;
constexpr size_t kReplyFixedBytes = 24;
constexpr size_t kPullFixedBytes = 8;       // + 8 per range
constexpr size_t kDataFixedBytes = 12;
constexpr size_t kAckFixedBytes = 4;        // + 8 per entry
constexpr size_t kCancelBytes = 8;
constexpr size_t kPulseBytes = 20;
constexpr size_t kProbeFixedBytes = 8;      // + padding
constexpr size_t kProbeAckBytes = 8;
constexpr size_t kResetBytes = 16;
constexpr size_t kNameFixedBytes = 12;      // + name
constexpr size_t kChallengeBytes = 8;
constexpr size_t kChallengeAckBytes = 24;

// The largest prefix of a packet the decoder must see at once (header + largest fixed body).
constexpr size_t kParseBytesMax = kHeaderBytes + kAckFixedBytes + 8 * kAckEntriesMax;

// Bytes of payload a REQUEST / REPLY / DATA packet can carry under an IP packet size `mtu`.
constexpr size_t payload_capacity(size_t mtu, size_t fixed_body_bytes, bool auth) {
    size_t overhead = kIpv4HeaderBytes + kHeaderBytes + fixed_body_bytes + (auth ? kMacBytes : 0);
    return mtu > overhead ? mtu - overhead : 0;
}

// ---- Checksum ---------------------------------------------------------------------------------
// Ones'-complement sum (RFC 1071) over the pseudo-header {src IPv4, dst IPv4, 0, 121, SMP length}
// and the SMP packet with the checksum field as zero. IPv4 addresses are host-order uint32_t.
uint16_t checksum(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4);
// The IPv4 header checksum (for pcap writers and raw-socket users that build IP headers).
uint16_t ipv4_header_checksum(const uint8_t* header, size_t bytes);

// ---- Authentication (SPEC.md 3.4) -------------------------------------------------------------
// A cluster key: with it, every packet carries AUTH and a 16-byte MAC, keyed BLAKE2s (RFC 7693,
// 32-byte key, 16-byte digest) over the pseudo-header (source and destination address, zero,
// protocol 121, SMP length: 12 bytes as for the checksum) and the packet up to the MAC with the
// checksum field as zero; the checksum then covers the MAC too.
constexpr size_t kAuthKeyBytes = 32;
struct AuthKey {
    uint8_t bytes[kAuthKeyBytes];
};
// The MAC's state once the key block is compressed: made once per key (mac_key), so that each
// MAC costs the blocks of its own packet only (a small packet's three instead of four).
struct MacKey {
    uint32_t h[8];
};
MacKey mac_key(const AuthKey& key);
// Keyed BLAKE2s of a run of parts (one call: the MAC's input is at most a few parts). `out_bytes`
// 1..32. Exposed for the tests (RFC 7693's vectors and Python's hashlib agree with it).
struct Blake2s {
    uint32_t h[8];
    uint64_t t = 0;
    uint8_t buf[64];
    size_t fill = 0, out_bytes = 32;
    void init(const uint8_t* key, size_t key_bytes, size_t out_bytes);
    void init(const MacKey& key);  // a kMacBytes MAC, the key block already taken
    void update(const uint8_t* p, size_t n);
    void final(uint8_t* out);
};
// The MAC of an SMP packet of `length` bytes (MAC included) from src to dst.
void packet_mac(ConstChain packet, size_t length, uint32_t src_ipv4, uint32_t dst_ipv4, const MacKey& key,
                uint8_t out[kMacBytes]);
// The packet's AUTH flag is set and its MAC is right (compared in constant time).
bool mac_ok(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4, const MacKey& key);

// ---- Encode / decode --------------------------------------------------------------------------
// Encodes m into out (at most cap bytes), with checksum; returns the packet's size, or 0 if it
// does not fit or m is invalid. Sets m.header.length and m.header.checksum.
// With `key`, the packet carries AUTH and its MAC (the flag is set here).
size_t encode(Message& m, uint32_t src_ipv4, uint32_t dst_ipv4, uint8_t* out, size_t cap,
              const MacKey* key = nullptr);

// Decodes one datagram (the IP payload, possibly a chain of buffers). On kOk, m is filled and
// m.payload says where the payload is. The checksum is verified unless verify_checksum is false.
DecodeError decode(ConstChain packet, uint32_t src_ipv4, uint32_t dst_ipv4, Message& m,
                   bool verify_checksum = true);

inline DecodeError decode(const uint8_t* bytes, size_t size, uint32_t src_ipv4, uint32_t dst_ipv4,
                          Message& m, bool verify_checksum = true) {
    ConstBytes one{bytes, size};
    return decode(ConstChain{&one, 1}, src_ipv4, dst_ipv4, m, verify_checksum);
}

}  // namespace smp::wire
