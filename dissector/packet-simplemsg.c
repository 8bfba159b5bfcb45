/* packet-simplemsg.c
 * Routines for the Simple Message Protocol (SMP, IPv4 protocol 121) dissection
 * Wire format: protocol/SPEC.md of the simplemsg project (version 1).
 *
 * The filter name is "simplemsg": Wireshark already has a built-in "smp" (Session Multiplex
 * Protocol), and two protocols may not share a filter name.
 *
 * What this dissector adds to the plain fields:
 *  - the checksum over the pseudo-header, verified (status field + expert info);
 *  - the engine's verdict: the same rule order as protocol/wire.cc's decode(), so a packet the
 *    engine would drop shows why ("simplemsg.verdict");
 *  - request/response tracking per transaction (conversation + wmem_map), with links both ways,
 *    the response time, retransmission and duplicate marks, and what each acknowledgement acks;
 *  - reassembly of a message from its eager (REQUEST/REPLY) and pulled (DATA) parts;
 *  - service names learnt from NAME_REPLY, a stream index per exchange, PULL/DATA links;
 *  - packets cut short by the capture marked and "not judged";
 *  - with a cluster key (preference simplemsg.auth_key), each AUTH packet's MAC verified (keyed
 *    BLAKE2s through libgcrypt, SPEC 3.4): a packet without the right MAC is dropped by a keyed
 *    receiver ("dropped-auth"), the others are tracked as unauthenticated ones;
 *  - a statistics tree (-z simplemsg,tree) fed by the "simplemsg" tap.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <wireshark.h>

#include <epan/packet.h>
#include <epan/conversation.h>
#include <epan/expert.h>
#include <epan/in_cksum.h>
#include <epan/prefs.h>
#include <epan/reassemble.h>
#include <epan/unit_strings.h>
#include <epan/crc32-tvb.h>
#include <epan/dissectors/packet-ip.h>
#include <epan/proto_data.h>
#include <epan/stats_tree.h>
#include <epan/tap.h>
#include <epan/strutil.h>
#include <wsutil/str_util.h>
#include <wsutil/utf8_entities.h>
#include <wsutil/wsgcrypt.h>

#include "packet-simplemsg.h"

/* ---- Wire constants (protocol/SPEC.md sections 3 and 4; protocol/wire.h) ---------------- */
#define SIMPLEMSG_IP_PROTO          121
#define SMP_VERSION                 1
#define SMP_HEADER_BYTES            32
#define SMP_MAC_BYTES               16
#define SMP_MESSAGE_BYTES_MAX       (16u * 1024 * 1024)
#define SMP_PULL_RANGES_MAX         8
#define SMP_ACK_ENTRIES_MAX         32
#define SMP_NAME_BYTES_MAX          32
#define SMP_NO_DEADLINE             0xFFFFFFFFu
#define SMP_MTU_MIN                 576
#define SMP_IPV4_HEADER_BYTES       20
#define SMP_ERROR_WIRE_MAX          9       /* SPEC 7: 10-63 unassigned, >= 64 local only: malformed */

#define SMP_FLAG_RETRANSMISSION     0x01
#define SMP_FLAGS_IGNORABLE         0x0E
#define SMP_FLAGS_CRITICAL          0x70
#define SMP_FLAG_AUTH               0x80

enum {
    SMP_HELLO = 1, SMP_HELLO_ACK = 2, SMP_REQUEST = 3, SMP_REPLY = 4, SMP_PULL = 5,
    SMP_DATA = 6, SMP_ACK = 7, SMP_CANCEL = 8, SMP_PULSE = 9, SMP_PROBE = 10,
    SMP_PROBE_ACK = 11, SMP_RESET = 12, SMP_NAME_QUERY = 13, SMP_NAME_REPLY = 14,
    SMP_CHALLENGE = 15, SMP_CHALLENGE_ACK = 16
};
#define SMP_TYPE_MAX 16

/* Channels the nodes and libsmp answer themselves (protocol/kernel/bridge.cc, libsmp.cc):
 * `_names` lists the attached names, `_stats` a service's high-water marks. */
#define SMP_RESERVED_CHANNELS       0xFFFF0000u
#define SMP_NAMES_CHANNEL           0xFFFF0001u
#define SMP_STATS_CHANNEL           0xFFFF0002u

/* Fixed body sizes after the header. */
#define SMP_HELLO_BYTES             20
#define SMP_REQUEST_FIXED_BYTES     32
#define SMP_REPLY_FIXED_BYTES       24
#define SMP_PULL_FIXED_BYTES        8
#define SMP_DATA_FIXED_BYTES        12
#define SMP_ACK_FIXED_BYTES         4
#define SMP_CANCEL_BYTES            8
#define SMP_PULSE_BYTES             20
#define SMP_PROBE_FIXED_BYTES       8
#define SMP_PROBE_ACK_BYTES         8
#define SMP_RESET_BYTES             16
#define SMP_NAME_FIXED_BYTES        12
#define SMP_CHALLENGE_BYTES         8
#define SMP_CHALLENGE_ACK_BYTES     24
#define SMP_TXN_WINDOW_MAX          64      /* a CHALLENGE_ACK's open txns lie within 64 (SPEC 4.11) */

enum { SMP_ERR_OK = 0, SMP_ERR_STALE = 7, SMP_ERR_BUSY = 3, SMP_ERR_NO_SUCH_SERVICE = 8,
       SMP_ERR_CANCELLED = 4, SMP_ERR_TIMED_OUT = 5 };
enum { SMP_WHAT_REQUEST = 1, SMP_WHAT_REPLY = 2 };
enum { SMP_ACK_REQUEST_RECEIVED = 1, SMP_ACK_REPLY_RECEIVED = 2, SMP_ACK_CANCEL_RECEIVED = 3,
       SMP_ACK_PULSE_RECEIVED = 4 };

/* The engine's reasons for dropping a packet (protocol/wire.h DecodeError), same numbers. */
enum {
    SMP_V_OK = 0, SMP_V_TOO_SHORT, SMP_V_BAD_VERSION, SMP_V_BAD_LENGTH, SMP_V_BAD_CHECKSUM,
    SMP_V_CRITICAL_FLAG, SMP_V_UNKNOWN_TYPE, SMP_V_BODY_TOO_SHORT, SMP_V_TRAILING_BYTES,
    SMP_V_BAD_FIELD,
    /* Not the engine's: a packet cut short by the capture's snapshot length, whose checksum
     * and body cannot be checked (far from the engine's numbers, which may grow). */
    SMP_V_NOT_JUDGED = 255,
    /* Not a decode error either: a keyed receiver's drop of a packet whose MAC is missing or
     * wrong (SPEC 3.4; the engine counts it as dropped_auth, after a clean decode). */
    SMP_V_DROPPED_AUTH = 254
};

/* What became of an AUTH packet's MAC (simplemsg.mac.status); the numbers of Wireshark's
 * checksum status where they mean the same. */
enum {
    SMP_MAC_BAD = 0, SMP_MAC_GOOD = 1, SMP_MAC_UNVERIFIED = 2, SMP_MAC_NOT_CHECKED = 3
};
#define SMP_AUTH_KEY_BYTES          32

static const value_string smp_type_vals[] = {
    { SMP_HELLO,      "HELLO" },
    { SMP_HELLO_ACK,  "HELLO_ACK" },
    { SMP_REQUEST,    "REQUEST" },
    { SMP_REPLY,      "REPLY" },
    { SMP_PULL,       "PULL" },
    { SMP_DATA,       "DATA" },
    { SMP_ACK,        "ACK" },
    { SMP_CANCEL,     "CANCEL" },
    { SMP_PULSE,      "PULSE" },
    { SMP_PROBE,      "PROBE" },
    { SMP_PROBE_ACK,  "PROBE_ACK" },
    { SMP_RESET,      "RESET" },
    { SMP_NAME_QUERY, "NAME_QUERY" },
    { SMP_NAME_REPLY, "NAME_REPLY" },
    { SMP_CHALLENGE,  "CHALLENGE" },
    { SMP_CHALLENGE_ACK, "CHALLENGE_ACK" },
    { 0, NULL }
};

static const value_string smp_error_vals[] = {
    { 0, "ok" },
    { 1, "no-such-channel" },
    { 2, "too-large" },
    { 3, "busy" },
    { 4, "cancelled" },
    { 5, "timed-out" },
    { 6, "app-error" },
    { 7, "stale" },
    { 8, "no-such-service" },
    { 9, "server-gone" },
    { 0, NULL }
};

static const value_string smp_what_vals[] = {
    { SMP_WHAT_REQUEST, "request bytes" },
    { SMP_WHAT_REPLY,   "reply bytes" },
    { 0, NULL }
};

static const value_string smp_ack_kind_vals[] = {
    { SMP_ACK_REQUEST_RECEIVED, "request received" },
    { SMP_ACK_REPLY_RECEIVED,   "reply received" },
    { SMP_ACK_CANCEL_RECEIVED,  "cancel received" },
    { SMP_ACK_PULSE_RECEIVED,   "pulse received" },
    { 0, NULL }
};

static const value_string smp_reset_reason_vals[] = {
    { 1, "unknown incarnation" },
    { 2, "no peer slot (alive, try later)" },
    { 0, NULL }
};

static const value_string smp_verdict_vals[] = {
    { SMP_V_OK,             "ok" },
    { SMP_V_TOO_SHORT,      "too-short" },
    { SMP_V_BAD_VERSION,    "bad-version" },
    { SMP_V_BAD_LENGTH,     "bad-length" },
    { SMP_V_BAD_CHECKSUM,   "bad-checksum" },
    { SMP_V_CRITICAL_FLAG,  "critical-flag" },
    { SMP_V_UNKNOWN_TYPE,   "unknown-type" },
    { SMP_V_BODY_TOO_SHORT, "body-too-short" },
    { SMP_V_TRAILING_BYTES, "trailing-bytes" },
    { SMP_V_BAD_FIELD,      "bad-field" },
    { SMP_V_DROPPED_AUTH,   "dropped-auth" },
    { SMP_V_NOT_JUDGED,     "not-judged" },
    { 0, NULL }
};

static const value_string smp_mac_status_vals[] = {
    { SMP_MAC_BAD,         "bad" },
    { SMP_MAC_GOOD,        "good" },
    { SMP_MAC_UNVERIFIED,  "unverified (no key given)" },
    { SMP_MAC_NOT_CHECKED, "not checked (packet not all there)" },
    { 0, NULL }
};

/* ---- Registration handles ------------------------------------------------------------------ */
static int proto_simplemsg = -1;

static int hf_smp_version = -1;
static int hf_smp_type = -1;
static int hf_smp_flags = -1;
static int hf_smp_flag_retrans = -1;
static int hf_smp_flag_ignorable = -1;
static int hf_smp_flag_critical = -1;
static int hf_smp_flag_auth = -1;
static int hf_smp_priority = -1;
static int hf_smp_checksum = -1;
static int hf_smp_checksum_status = -1;
static int hf_smp_length = -1;
static int hf_smp_dst_endpoint = -1;
static int hf_smp_src_endpoint = -1;
static int hf_smp_ack = -1;
static int hf_smp_dst_incarnation = -1;
static int hf_smp_src_incarnation = -1;
static int hf_smp_verdict = -1;
static int hf_smp_cut_short = -1;

static int hf_smp_window_bytes = -1;
static int hf_smp_window_txns = -1;
static int hf_smp_mtu = -1;
static int hf_smp_message_bytes_max = -1;
static int hf_smp_nonce = -1;
static int hf_smp_eager_bytes_max = -1;

static int hf_smp_txn = -1;
static int hf_smp_txn_low = -1;
static int hf_smp_txn_next = -1;
static int hf_smp_open_txns = -1;
static int hf_smp_channel = -1;
static int hf_smp_total_bytes = -1;
static int hf_smp_eager_bytes = -1;
static int hf_smp_offset = -1;
static int hf_smp_reply_bytes_max = -1;
static int hf_smp_deadline = -1;
static int hf_smp_error = -1;
static int hf_smp_reserved = -1;
static int hf_smp_status = -1;
static int hf_smp_what = -1;
static int hf_smp_range_count = -1;
static int hf_smp_range = -1;
static int hf_smp_range_offset = -1;
static int hf_smp_range_bytes = -1;
static int hf_smp_ack_count = -1;
static int hf_smp_ack_entry = -1;
static int hf_smp_ack_txn = -1;
static int hf_smp_ack_kind = -1;
static int hf_smp_cancel_reason = -1;
static int hf_smp_pulse_code = -1;
static int hf_smp_pulse_value = -1;
static int hf_smp_pulse_source = -1;
static int hf_smp_probe_seq = -1;
static int hf_smp_probe_bytes = -1;
static int hf_smp_padding = -1;
static int hf_smp_named_incarnation = -1;
static int hf_smp_reset_reason = -1;
static int hf_smp_query = -1;
static int hf_smp_name_bytes = -1;
static int hf_smp_name = -1;
static int hf_smp_payload = -1;
static int hf_smp_payload_bytes = -1;
static int hf_smp_mac = -1;
static int hf_smp_mac_status = -1;
static int hf_smp_mac_computed = -1;
static int hf_smp_message = -1;

/* Derived from other frames (all generated). */
static int hf_smp_stream = -1;
static int hf_smp_request_in = -1;
static int hf_smp_response_in = -1;
static int hf_smp_previous_life_in = -1;
static int hf_smp_response_time = -1;
static int hf_smp_retransmission_of = -1;
static int hf_smp_duplicate_of = -1;
static int hf_smp_acked_frame = -1;
static int hf_smp_reply_acked_in = -1;
static int hf_smp_pull_in = -1;
static int hf_smp_data_in = -1;
static int hf_smp_out_of_window = -1;

static int hf_smp_fragments = -1;
static int hf_smp_fragment = -1;
static int hf_smp_fragment_overlap = -1;
static int hf_smp_fragment_overlap_conflicts = -1;
static int hf_smp_fragment_multiple_tails = -1;
static int hf_smp_fragment_too_long_fragment = -1;
static int hf_smp_fragment_error = -1;
static int hf_smp_fragment_count = -1;
static int hf_smp_reassembled_in = -1;
static int hf_smp_reassembled_length = -1;
static int hf_smp_reassembled_data = -1;

static gint ett_simplemsg = -1;
static gint ett_smp_flags = -1;
static gint ett_smp_body = -1;
static gint ett_smp_range = -1;
static gint ett_smp_ack_entry = -1;
static gint ett_smp_fragment = -1;
static gint ett_smp_fragments = -1;

static expert_field ei_smp_bad_checksum = EI_INIT;
static expert_field ei_smp_too_short = EI_INIT;
static expert_field ei_smp_unknown_version = EI_INIT;
static expert_field ei_smp_bad_length = EI_INIT;
static expert_field ei_smp_critical_flag = EI_INIT;
static expert_field ei_smp_unknown_type = EI_INIT;
static expert_field ei_smp_truncated = EI_INIT;
static expert_field ei_smp_trailing = EI_INIT;
static expert_field ei_smp_bad_field = EI_INIT;
static expert_field ei_smp_retransmission = EI_INIT;
static expert_field ei_smp_duplicate = EI_INIT;
static expert_field ei_smp_out_of_window = EI_INIT;
static expert_field ei_smp_error_reply = EI_INIT;
static expert_field ei_smp_reset = EI_INIT;
static expert_field ei_smp_refused = EI_INIT;
static expert_field ei_smp_auth = EI_INIT;
static expert_field ei_smp_mac_bad = EI_INIT;
static expert_field ei_smp_mac_missing = EI_INIT;
static expert_field ei_smp_capture_short = EI_INIT;
static expert_field ei_smp_no_dst_incarnation = EI_INIT;
static expert_field ei_smp_rebooted = EI_INIT;

static dissector_handle_t simplemsg_handle;
static int simplemsg_tap = -1;

/* What each packet tells the statistics tap (-z simplemsg,tree). */
typedef struct {
    gboolean has_type;       /* the type byte was there (else "no header") */
    guint8 type;
    int verdict;
    gboolean retransmission; /* as the Info column's marks */
    gboolean duplicate;
    gboolean has_time;       /* the first final answer of an exchange: its response time */
    guint32 time_us;
    guint8 exchange_type;    /* the type that opened the exchange (REQUEST for a transaction) */
    gboolean has_channel;
    guint32 channel;
    const gchar *service;
} smp_tap_info_t;
static reassembly_table smp_reassembly_table;

static gboolean smp_check_checksum = TRUE;
static gboolean smp_reassemble = TRUE;

/* The cluster key (SPEC 3.4): the preference as typed, and what it parsed to. */
static const gchar *smp_auth_key_pref = "";
static guint8 smp_auth_key[SMP_AUTH_KEY_BYTES];
enum { SMP_KEY_NONE, SMP_KEY_SET, SMP_KEY_INVALID };
static int smp_auth_key_state = SMP_KEY_NONE;

static const fragment_items smp_frag_items = {
    &ett_smp_fragment,
    &ett_smp_fragments,
    &hf_smp_fragments,
    &hf_smp_fragment,
    &hf_smp_fragment_overlap,
    &hf_smp_fragment_overlap_conflicts,
    &hf_smp_fragment_multiple_tails,
    &hf_smp_fragment_too_long_fragment,
    &hf_smp_fragment_error,
    &hf_smp_fragment_count,
    &hf_smp_reassembled_in,
    &hf_smp_reassembled_length,
    &hf_smp_reassembled_data,
    "Message parts"
};

/* ---- Tracking state ---------------------------------------------------------------------------
 * An exchange is one request and its answer: a transaction (REQUEST .. REPLY, with PULL/DATA/
 * CANCEL/ACK on the way), a pulse, a probe, a HELLO or a name query. It is keyed by the side that
 * started it (address, endpoint, incarnation), the other side (address, endpoint) and its number.
 */
enum { SMP_X_TXN = 1, SMP_X_PROBE, SMP_X_HELLO, SMP_X_NAME, SMP_X_CHALLENGE };

/* Transaction numbers run 1 .. 2^32-1 and wrap to 1 (SPEC.md 5.1): compare them cyclically. */
static guint32 smp_txn_dist(guint32 from, guint32 to)
{
    return to >= from ? to - from : to - from - 1u;
}

static gboolean smp_txn_before(guint32 a, guint32 b)
{
    guint32 d = smp_txn_dist(a, b);
    return d != 0 && d < 0x80000000u;
}

typedef struct {
    guint32 client_addr;     /* IPv4, network order as in the packet; 0 if not IPv4 */
    guint32 server_addr;
    guint64 client_incarnation;
    guint64 server_incarnation;  /* transactions only: numbering restarts with a new server */
    guint32 id;              /* txn, probe sequence, HELLO nonce or query id */
    guint16 client_ep;
    guint16 server_ep;
    guint8  kind;            /* SMP_X_* */
    guint8  pad[7];          /* zeroed: keys are hashed and compared as bytes */
} smp_xkey_t;

/* A PULL of a transaction, what it asks for and the DATA frames that answered it. */
typedef struct smp_pull {
    struct smp_pull *older;  /* the transaction's PULLs, newest first */
    wmem_array_t *data_frames;  /* guint32 frame numbers, in capture order */
    guint32 frame;
    guint32 offset[SMP_PULL_RANGES_MAX];
    guint32 bytes[SMP_PULL_RANGES_MAX];
    guint8 count;
    guint8 what;
} smp_pull_t;

/* Byte ranges [start, end) of a message, sorted and merged. */
typedef struct {
    guint32 start;
    guint32 end;
} smp_span_t;

typedef struct {
    smp_span_t *v;           /* file scope */
    guint32 count;
    guint32 room;
} smp_spans_t;

typedef struct {
    guint32 reasm_id;        /* unique per exchange; request parts use 2*id, reply parts 2*id+1 */
    guint32 stream;          /* simplemsg.stream: 0, 1, 2, ... in order of first appearance */
    guint32 request_frame;   /* first REQUEST / PULSE / PROBE / HELLO / NAME_QUERY */
    guint32 response_frame;  /* first final REPLY / PROBE_ACK / HELLO_ACK / NAME_REPLY */
    guint32 request_acked_frame;  /* ACK kind 1, REPLY or request PULL that acknowledged it */
    guint32 reply_acked_frame;    /* header ack or ACK kind 2 that acknowledged the reply */
    guint32 cancel_frame;
    guint32 cancel_acked_frame;
    guint32 pulse_acked_frame;
    nstime_t request_time;
    guint32 request_total;   /* REQUEST total bytes, if a REQUEST was seen */
    guint32 reply_total;     /* REPLY total bytes, if a REPLY was seen */
    gboolean have_request_total;
    gboolean have_reply_total;
    guint32 channel;         /* a transaction's channel, from its REQUEST or PULSE */
    gboolean have_channel;
    smp_pull_t *pulls;       /* newest first */
    smp_spans_t given[2];    /* byte ranges given to the reassembly: request, reply */
} smp_exchange_t;

/* What NAME_REPLY packets told: (server address, endpoint, incarnation, channel) -> service
 * name, over the whole capture (another client may call the channel a lookup named). */
typedef struct {
    guint64 server_incarnation;
    guint32 server_addr;
    guint32 channel;
    guint16 server_ep;
    guint8  pad[6];          /* zeroed: keys are hashed and compared as bytes */
} smp_svckey_t;

/* A part of a message or a repeated control packet: (exchange, type, what, offset, error). The
 * error: a REPLY `busy` followed by the final one, or `stale` after `ok` (answering a late
 * duplicate request), is no repeat. */
typedef struct {
    smp_xkey_t x;
    guint32 offset;
    guint16 error;
    guint8 type;
    guint8 what;
} smp_segkey_t;

/* Exact repeats: (source, destination, IP identification, length, CRC-32 of the SMP packet).
 * A copy made by the network keeps the IP identification; a sender's retransmission is a new IP
 * packet, so identical SMP bytes with a new identification count as a retransmission. */
typedef struct {
    guint32 src_addr;
    guint32 dst_addr;
    guint32 crc;
    guint32 length;
    guint32 ip_id;           /* 0x10000 + id when known, 0 when not IPv4 */
} smp_dupkey_t;

/* The copy a later identical packet is compared with. */
typedef struct {
    guint32 frame;
    nstime_t time;
} smp_copy_t;

/* Linux sends DF packets with IP identification 0, so an identical resend cannot be told from a
 * network copy by the identification; then only a copy that follows within this time counts as
 * a duplicate (a resend waits at least the engine's minimum retransmission timeout, 2 ms). */
#define SMP_DUPLICATE_WINDOW_NS 1000000

/* The window a server granted a client (HELLO/HELLO_ACK), and what the client said is finished. */
typedef struct {
    guint32 window_txns;     /* 0 = not seen */
    guint32 txn_low;         /* latest txn_low seen from the client (0: none yet) */
    guint64 client_inc, server_inc;  /* the lives txn_low belongs to: another pair numbers anew */
    nstime_t last_seen;      /* a client silent for the numbering lapse may number anew too */
} smp_window_t;

/* SPEC 5.1: a server takes a client's numbering anew after peer_linger - dead_after (9 s by
 * default) of silence. */
#define SMP_NUMBERING_LAPSE_S 9

typedef struct {
    wmem_map_t *exchanges;   /* smp_xkey_t -> smp_exchange_t */
    wmem_map_t *segments;    /* smp_segkey_t -> first frame (GUINT_TO_POINTER) */
    wmem_map_t *repeats;     /* smp_dupkey_t -> smp_copy_t */
    wmem_map_t *windows;     /* smp_xkey_t (kind 0, id 0) -> smp_window_t */
    wmem_map_t *lives;       /* (address << 16 | endpoint) -> smp_life_t: each side's incarnation */
} smp_conv_t;

/* The incarnation an endpoint was last seen in, and the frame. */
typedef struct {
    guint64 incarnation;
    guint32 frame;
} smp_life_t;

/* What the first pass learnt about one frame; later passes only read it. */
typedef struct {
    smp_exchange_t *x;
    guint32 retransmission_of;
    guint32 duplicate_of;
    guint32 acked_frame;          /* the reply frame the header's ack acknowledges */
    guint32 ack_entry_frames[SMP_ACK_ENTRIES_MAX];
    gboolean out_of_window;
    gboolean reassemble;          /* this frame's payload was given to the reassembly table */
    guint64 previous_life;        /* its sender's incarnation before this one (it rebooted) */
    guint32 previous_life_in;     /* ... last seen in this frame (0: no reboot here) */
    const gchar *service;         /* its transaction's service name, as known then (or NULL) */
    guint32 acked_streams[SMP_ACK_ENTRIES_MAX + 1];  /* streams of the exchanges it acknowledges */
    guint32 acked_stream_count;   /* (other than its own, each once) */
    smp_pull_t *pull;             /* a PULL: what it asked for and the DATA that answered */
    guint32 pull_in;              /* a DATA: the PULL it answers (0: none seen) */
} smp_frame_t;

static guint32 smp_next_reasm_id = 1;
static guint32 smp_next_stream = 0;
static wmem_map_t *smp_services;  /* smp_svckey_t -> gchar* (file scope, emptied per file) */

static guint
smp_key_hash(gconstpointer k, size_t len)
{
    return wmem_strong_hash((const guint8 *)k, len);
}

static guint smp_xkey_hash(gconstpointer k) { return smp_key_hash(k, sizeof(smp_xkey_t)); }
static gboolean smp_xkey_equal(gconstpointer a, gconstpointer b)
{ return memcmp(a, b, sizeof(smp_xkey_t)) == 0; }
static guint smp_segkey_hash(gconstpointer k) { return smp_key_hash(k, sizeof(smp_segkey_t)); }
static gboolean smp_segkey_equal(gconstpointer a, gconstpointer b)
{ return memcmp(a, b, sizeof(smp_segkey_t)) == 0; }
static guint smp_svckey_hash(gconstpointer k) { return smp_key_hash(k, sizeof(smp_svckey_t)); }
static gboolean smp_svckey_equal(gconstpointer a, gconstpointer b)
{ return memcmp(a, b, sizeof(smp_svckey_t)) == 0; }
static guint smp_dupkey_hash(gconstpointer k) { return smp_key_hash(k, sizeof(smp_dupkey_t)); }
static gboolean smp_dupkey_equal(gconstpointer a, gconstpointer b)
{ return memcmp(a, b, sizeof(smp_dupkey_t)) == 0; }

static void
smp_init(void)
{
    smp_next_reasm_id = 1;
    smp_next_stream = 0;
}

/* ---- The parsed header and body ----------------------------------------------------------- */
typedef struct {
    guint8  version, type, flags, priority;
    guint16 checksum, length;
    guint16 dst_ep, src_ep;
    guint32 ack;
    guint64 dst_inc, src_inc;
    guint32 src_addr, dst_addr;   /* IPv4 network order; 0 when not IPv4 */
    gboolean ipv4;
    /* Body fields the tracking needs (0 when the type has none). */
    guint32 txn, txn_low, channel, total, eager, offset, id;
    guint32 payload_offset, payload_bytes;
    guint16 error;
    guint8  what;
    guint32 hello_window_txns;
    gboolean from_client;         /* for txn-carrying types: sent by the transaction's client */
    guint32 ip_id;                /* 0x10000 + IPv4 identification, or 0 if unknown */
    int verdict;                  /* SMP_V_* */
} smp_packet_t;

static guint32
smp_ipv4_of(const address *a, gboolean *ok)
{
    guint32 v = 0;
    if (a->type == AT_IPv4 && a->len == 4) {
        memcpy(&v, a->data, 4);
        return v;
    }
    *ok = FALSE;
    return 0;
}

/* The 12-byte pseudo-header {src, dst, 0, 121, SMP length} the checksum and the MAC begin with. */
static void
smp_pseudo_header(const smp_packet_t *p, guint len, guint8 out[12])
{
    memcpy(out, &p->src_addr, 4);
    memcpy(out + 4, &p->dst_addr, 4);
    out[8] = 0;
    out[9] = SIMPLEMSG_IP_PROTO;
    out[10] = (guint8)(len >> 8);
    out[11] = (guint8)len;
}

/* RFC 1071 over {src, dst, 0, 121, length} and the packet with its checksum field as zero;
 * a computed 0 is sent as 0xFFFF (SPEC 3.3). */
static guint16
smp_compute_checksum(tvbuff_t *tvb, const smp_packet_t *p, guint len)
{
    vec_t cksum_vec[4];
    guint8 pseudo[12];
    guint16 c;

    smp_pseudo_header(p, len, pseudo);
    SET_CKSUM_VEC_PTR(cksum_vec[0], pseudo, 12);
    SET_CKSUM_VEC_TVB(cksum_vec[1], tvb, 0, 4);
    /* bytes 4-5 (the checksum) count as zero: simply left out of the sum */
    SET_CKSUM_VEC_TVB(cksum_vec[2], tvb, 6, len - 6);
    /* in_cksum sums host-order words: its result is in network order once swapped back */
    c = g_ntohs((guint16)in_cksum(cksum_vec, 3));
    return c == 0 ? 0xFFFF : c;
}

/* The MAC of an AUTH packet of `len` bytes (MAC included): keyed BLAKE2s (RFC 7693) with the
 * 32-byte cluster key and a 16-byte digest, over the pseudo-header of the checksum and the packet
 * up to the MAC with its checksum field as zero (SPEC 3.4; protocol/wire.cc packet_mac). libgcrypt
 * (which Wireshark links) has it: BLAKE2s-128, keyed by gcry_md_setkey. FALSE when libgcrypt
 * refuses (e.g. BLAKE2 disabled in FIPS mode). */
static gboolean
smp_compute_mac(tvbuff_t *tvb, const smp_packet_t *p, guint len, guint8 out[SMP_MAC_BYTES])
{
    static const guint8 zero[2] = { 0, 0 };
    gcry_md_hd_t h;
    guint8 pseudo[12];
    const guint8 *digest;

    if (len < SMP_HEADER_BYTES + SMP_MAC_BYTES ||
        gcry_md_open(&h, GCRY_MD_BLAKE2S_128, 0) != 0)
        return FALSE;
    if (gcry_md_setkey(h, smp_auth_key, SMP_AUTH_KEY_BYTES) != 0) {
        gcry_md_close(h);
        return FALSE;
    }
    smp_pseudo_header(p, len, pseudo);
    gcry_md_write(h, pseudo, sizeof pseudo);
    gcry_md_write(h, tvb_get_ptr(tvb, 0, 4), 4);
    gcry_md_write(h, zero, sizeof zero);   /* the checksum field */
    gcry_md_write(h, tvb_get_ptr(tvb, 6, len - 6 - SMP_MAC_BYTES), len - 6 - SMP_MAC_BYTES);
    digest = gcry_md_read(h, GCRY_MD_BLAKE2S_128);
    if (digest == NULL) {
        gcry_md_close(h);
        return FALSE;
    }
    memcpy(out, digest, SMP_MAC_BYTES);
    gcry_md_close(h);
    return TRUE;
}

/* Parses simplemsg.auth_key: 64 hex digits (blanks around them allowed), or empty for none. */
static void
smp_apply_prefs(void)
{
    const gchar *k = smp_auth_key_pref ? smp_auth_key_pref : "";
    gsize n;
    guint i;

    while (g_ascii_isspace(*k)) k++;
    n = strlen(k);
    while (n > 0 && g_ascii_isspace(k[n - 1])) n--;
    if (n == 0) {
        smp_auth_key_state = SMP_KEY_NONE;
        return;
    }
    smp_auth_key_state = SMP_KEY_INVALID;
    if (n != 2 * SMP_AUTH_KEY_BYTES)
        return;
    for (i = 0; i < SMP_AUTH_KEY_BYTES; i++) {
        int hi = g_ascii_xdigit_value(k[2 * i]), lo = g_ascii_xdigit_value(k[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        smp_auth_key[i] = (guint8)(hi << 4 | lo);
    }
    smp_auth_key_state = SMP_KEY_SET;
}

/* ---- Body checks: the engine's rules (protocol/wire.cc decode_body), in the same order ------- */
static int
smp_fixed(guint have, guint need)
{
    if (have < need) return SMP_V_BODY_TOO_SHORT;
    if (have > need) return SMP_V_TRAILING_BYTES;
    return SMP_V_OK;
}

/* Reads what the checks and the tracking need from a body of `have` bytes at offset 32. Every
 * read is inside `have` (checked first), so no exception can come from here. */
static int
smp_check_body(tvbuff_t *tvb, guint have, smp_packet_t *p)
{
    const int b = SMP_HEADER_BYTES;
    guint64 data;
    int e;
    guint i, count;

    switch (p->type) {
    case SMP_HELLO:
    case SMP_HELLO_ACK:
        if ((e = smp_fixed(have, SMP_HELLO_BYTES)) != SMP_V_OK) return e;
        p->hello_window_txns = tvb_get_ntohs(tvb, b + 4);
        p->id = tvb_get_ntohl(tvb, b + 12);
        if (tvb_get_ntohs(tvb, b + 6) < SMP_MTU_MIN) return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_REQUEST: {
        guint32 reply_max;
        if (have < SMP_REQUEST_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->txn = tvb_get_ntohl(tvb, b);
        p->txn_low = tvb_get_ntohl(tvb, b + 4);
        p->channel = tvb_get_ntohl(tvb, b + 8);
        p->total = tvb_get_ntohl(tvb, b + 12);
        p->eager = tvb_get_ntohl(tvb, b + 16);
        p->offset = tvb_get_ntohl(tvb, b + 20);
        reply_max = tvb_get_ntohl(tvb, b + 24);
        data = have - SMP_REQUEST_FIXED_BYTES;
        p->payload_offset = b + SMP_REQUEST_FIXED_BYTES;
        p->payload_bytes = (guint32)data;
        p->from_client = TRUE;
        if (p->txn == 0 || smp_txn_before(p->txn, p->txn_low) || p->total > SMP_MESSAGE_BYTES_MAX ||
            p->eager > p->total || (guint64)p->offset + data > p->eager ||
            (data == 0 && p->eager != 0) || reply_max > SMP_MESSAGE_BYTES_MAX)
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    }
    case SMP_REPLY:
        if (have < SMP_REPLY_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->txn = tvb_get_ntohl(tvb, b);
        p->error = tvb_get_ntohs(tvb, b + 4);
        p->total = tvb_get_ntohl(tvb, b + 12);
        p->eager = tvb_get_ntohl(tvb, b + 16);
        p->offset = tvb_get_ntohl(tvb, b + 20);
        data = have - SMP_REPLY_FIXED_BYTES;
        p->payload_offset = b + SMP_REPLY_FIXED_BYTES;
        p->payload_bytes = (guint32)data;
        p->from_client = FALSE;
        if (p->txn == 0 || p->total > SMP_MESSAGE_BYTES_MAX || p->eager > p->total ||
            (guint64)p->offset + data > p->eager || (data == 0 && p->eager != 0) ||
            p->error > SMP_ERROR_WIRE_MAX || (p->error != SMP_ERR_OK && p->total != 0))
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_PULL:
        if (have < SMP_PULL_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->txn = tvb_get_ntohl(tvb, b);
        p->what = tvb_get_guint8(tvb, b + 4);
        count = tvb_get_guint8(tvb, b + 5);
        /* The server pulls request bytes from the client; the client pulls reply bytes. */
        p->from_client = (p->what == SMP_WHAT_REPLY);
        if (count < 1 || count > SMP_PULL_RANGES_MAX) return SMP_V_BAD_FIELD;
        if ((e = smp_fixed(have, SMP_PULL_FIXED_BYTES + 8 * count)) != SMP_V_OK) return e;
        for (i = 0; i < count; i++) {
            guint32 off = tvb_get_ntohl(tvb, b + 8 + 8 * i);
            guint32 len = tvb_get_ntohl(tvb, b + 12 + 8 * i);
            if (i == 0) p->offset = off;
            if (len == 0 || (guint64)off + len > SMP_MESSAGE_BYTES_MAX) return SMP_V_BAD_FIELD;
        }
        if (p->txn == 0 || (p->what != SMP_WHAT_REQUEST && p->what != SMP_WHAT_REPLY))
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_DATA:
        if (have < SMP_DATA_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->txn = tvb_get_ntohl(tvb, b);
        p->what = tvb_get_guint8(tvb, b + 4);
        p->offset = tvb_get_ntohl(tvb, b + 8);
        data = have - SMP_DATA_FIXED_BYTES;
        p->payload_offset = b + SMP_DATA_FIXED_BYTES;
        p->payload_bytes = (guint32)data;
        p->from_client = (p->what == SMP_WHAT_REQUEST);
        if (p->txn == 0 || data == 0 || (guint64)p->offset + data > SMP_MESSAGE_BYTES_MAX ||
            (p->what != SMP_WHAT_REQUEST && p->what != SMP_WHAT_REPLY))
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_ACK:
        if (have < SMP_ACK_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        count = tvb_get_ntohs(tvb, b);
        if (count < 1 || count > SMP_ACK_ENTRIES_MAX) return SMP_V_BAD_FIELD;
        if ((e = smp_fixed(have, SMP_ACK_FIXED_BYTES + 8 * count)) != SMP_V_OK) return e;
        for (i = 0; i < count; i++) {
            guint8 kind = tvb_get_guint8(tvb, b + 8 + 8 * i);
            if (tvb_get_ntohl(tvb, b + 4 + 8 * i) == 0 || kind < 1 || kind > 4)
                return SMP_V_BAD_FIELD;
        }
        return SMP_V_OK;
    case SMP_CANCEL:
        if ((e = smp_fixed(have, SMP_CANCEL_BYTES)) != SMP_V_OK) return e;
        p->txn = tvb_get_ntohl(tvb, b);
        p->error = tvb_get_ntohs(tvb, b + 4);
        p->from_client = TRUE;
        if (p->txn == 0 || (p->error != SMP_ERR_CANCELLED && p->error != SMP_ERR_TIMED_OUT))
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_PULSE:
        if ((e = smp_fixed(have, SMP_PULSE_BYTES)) != SMP_V_OK) return e;
        p->txn = tvb_get_ntohl(tvb, b);
        p->txn_low = tvb_get_ntohl(tvb, b + 4);
        p->channel = tvb_get_ntohl(tvb, b + 8);
        p->from_client = TRUE;
        if (p->txn == 0 || smp_txn_before(p->txn, p->txn_low)) return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_PROBE:
        if (have < SMP_PROBE_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->id = tvb_get_ntohl(tvb, b);
        p->payload_offset = b + SMP_PROBE_FIXED_BYTES;
        p->payload_bytes = have - SMP_PROBE_FIXED_BYTES;
        if ((guint)tvb_get_ntohs(tvb, b + 4) != SMP_IPV4_HEADER_BYTES + (guint)p->length)
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_PROBE_ACK:
        if ((e = smp_fixed(have, SMP_PROBE_ACK_BYTES)) != SMP_V_OK) return e;
        p->id = tvb_get_ntohl(tvb, b);
        /* echoes the PROBE's size: at least the smallest PROBE (IPv4 + header + fixed body) */
        if (tvb_get_ntohs(tvb, b + 4) < SMP_IPV4_HEADER_BYTES + SMP_HEADER_BYTES + SMP_PROBE_FIXED_BYTES)
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_RESET:
        if ((e = smp_fixed(have, SMP_RESET_BYTES)) != SMP_V_OK) return e;
        if (tvb_get_ntohs(tvb, b + 8) != 1 && tvb_get_ntohs(tvb, b + 8) != 2) return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_NAME_QUERY:
    case SMP_NAME_REPLY:
        if (have < SMP_NAME_FIXED_BYTES) return SMP_V_BODY_TOO_SHORT;
        p->id = tvb_get_ntohl(tvb, b);
        p->error = tvb_get_ntohs(tvb, b + 4);
        count = tvb_get_guint8(tvb, b + 6);
        p->channel = tvb_get_ntohl(tvb, b + 8);
        if (count < 1 || count > SMP_NAME_BYTES_MAX) return SMP_V_BAD_FIELD;
        if ((e = smp_fixed(have, SMP_NAME_FIXED_BYTES + count)) != SMP_V_OK) return e;
        if (p->type == SMP_NAME_QUERY && p->error != SMP_ERR_OK) return SMP_V_BAD_FIELD;
        if (p->error != SMP_ERR_OK && p->error != SMP_ERR_NO_SUCH_SERVICE) return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    case SMP_CHALLENGE:
        if ((e = smp_fixed(have, SMP_CHALLENGE_BYTES)) != SMP_V_OK) return e;
        p->id = tvb_get_ntohl(tvb, b);
        return SMP_V_OK;
    case SMP_CHALLENGE_ACK: {
        guint32 next, span;
        guint64 open;
        if ((e = smp_fixed(have, SMP_CHALLENGE_ACK_BYTES)) != SMP_V_OK) return e;
        p->id = tvb_get_ntohl(tvb, b);
        p->txn_low = tvb_get_ntohl(tvb, b + 4);
        next = tvb_get_ntohl(tvb, b + 8);
        open = tvb_get_ntoh64(tvb, b + 16);
        span = smp_txn_dist(p->txn_low, next);
        if (p->txn_low == 0 || next == 0 || span > SMP_TXN_WINDOW_MAX ||
            (span < SMP_TXN_WINDOW_MAX && (open >> span) != 0))
            return SMP_V_BAD_FIELD;
        return SMP_V_OK;
    }
    default:
        return SMP_V_UNKNOWN_TYPE;
    }
}

/* The engine's decode() order: too-short, version, length, checksum, critical flags, type,
 * source incarnation, MAC room, body. The body is only checked when the whole packet was
 * captured: a packet cut short by the capture's snapshot length is judged as far as the
 * length and then "not judged", since the checksum, which comes next, needs every byte. */
static int
smp_verdict(tvbuff_t *tvb, smp_packet_t *p, gboolean checksum_ok, gboolean checksum_known)
{
    guint size = tvb_reported_length(tvb);
    guint mac = (p->flags & SMP_FLAG_AUTH) ? SMP_MAC_BYTES : 0;
    gboolean cut = tvb_captured_length(tvb) < size;
    int body = SMP_V_OK;

    if (size < SMP_HEADER_BYTES) return SMP_V_TOO_SHORT;
    /* The body is read first (for the display), even when the header already fails. */
    if (size >= SMP_HEADER_BYTES + mac && !cut)
        body = smp_check_body(tvb, size - SMP_HEADER_BYTES - mac, p);
    if (p->version != SMP_VERSION) return SMP_V_BAD_VERSION;
    if (p->length != size) return SMP_V_BAD_LENGTH;
    if (cut) return SMP_V_NOT_JUDGED;
    if (checksum_known && !checksum_ok) return SMP_V_BAD_CHECKSUM;
    if (p->flags & SMP_FLAGS_CRITICAL) return SMP_V_CRITICAL_FLAG;
    if (p->type < 1 || p->type > SMP_TYPE_MAX) return SMP_V_UNKNOWN_TYPE;
    if (p->src_inc == 0) return SMP_V_BAD_FIELD;
    if (size < SMP_HEADER_BYTES + mac) return SMP_V_BODY_TOO_SHORT;
    return body;
}

/* Fixed body bytes of each type (the part before any payload, ranges, entries or name). */
static const guint8 smp_fixed_body_bytes[SMP_TYPE_MAX + 1] = {
    0, SMP_HELLO_BYTES, SMP_HELLO_BYTES, SMP_REQUEST_FIXED_BYTES, SMP_REPLY_FIXED_BYTES,
    SMP_PULL_FIXED_BYTES, SMP_DATA_FIXED_BYTES, SMP_ACK_FIXED_BYTES, SMP_CANCEL_BYTES,
    SMP_PULSE_BYTES, SMP_PROBE_FIXED_BYTES, SMP_PROBE_ACK_BYTES, SMP_RESET_BYTES,
    SMP_NAME_FIXED_BYTES, SMP_NAME_FIXED_BYTES, SMP_CHALLENGE_BYTES, SMP_CHALLENGE_ACK_BYTES
};

/* A packet cut short by the capture: reads the body fields the display needs from the `have`
 * bytes that were captured (of `whole` in the packet), only when its type's fixed part is all
 * there, and judges nothing. Payload sizes are those of the packet, not of the capture. */
static void
smp_read_cut(tvbuff_t *tvb, guint have, guint whole, smp_packet_t *p)
{
    guint fixed;

    if (p->type < 1 || p->type > SMP_TYPE_MAX) return;
    fixed = smp_fixed_body_bytes[p->type];
    if (have < fixed) return;
    switch (p->type) {
    case SMP_REQUEST: case SMP_REPLY: case SMP_DATA: case SMP_PROBE:
    case SMP_PULL: case SMP_ACK: case SMP_NAME_QUERY: case SMP_NAME_REPLY:
        /* reads the fixed part first; what follows is read only as far as `have` */
        (void)smp_check_body(tvb, have, p);
        break;
    default:
        /* a fixed-size body: read exactly it (extra captured bytes would stop the reads) */
        (void)smp_check_body(tvb, fixed, p);
        break;
    }
    if (p->payload_offset != 0)
        p->payload_bytes = whole > fixed ? whole - fixed : 0;
}

/* ---- Tracking (first pass only: fills smp_frame_t) ----------------------------------------- */
static smp_conv_t *
smp_get_conv(packet_info *pinfo)
{
    conversation_t *conv = find_or_create_conversation(pinfo);
    smp_conv_t *c = (smp_conv_t *)conversation_get_proto_data(conv, proto_simplemsg);

    if (!c) {
        c = wmem_new0(wmem_file_scope(), smp_conv_t);
        c->exchanges = wmem_map_new(wmem_file_scope(), smp_xkey_hash, smp_xkey_equal);
        c->segments = wmem_map_new(wmem_file_scope(), smp_segkey_hash, smp_segkey_equal);
        c->repeats = wmem_map_new(wmem_file_scope(), smp_dupkey_hash, smp_dupkey_equal);
        c->windows = wmem_map_new(wmem_file_scope(), smp_xkey_hash, smp_xkey_equal);
        c->lives = wmem_map_new(wmem_file_scope(), g_int64_hash, g_int64_equal);
        conversation_add_proto_data(conv, proto_simplemsg, c);
    }
    return c;
}

/* The key of exchange `id` of `kind`, started by the client side of this packet. */
static void
smp_make_xkey(smp_xkey_t *k, const smp_packet_t *p, guint8 kind, guint32 id, gboolean from_client)
{
    memset(k, 0, sizeof(*k));
    k->kind = kind;
    k->id = id;
    if (from_client) {
        k->client_addr = p->src_addr;
        k->server_addr = p->dst_addr;
        k->client_ep = p->src_ep;
        k->server_ep = p->dst_ep;
        k->client_incarnation = p->src_inc;
        k->server_incarnation = p->dst_inc;
    } else {
        k->client_addr = p->dst_addr;
        k->server_addr = p->src_addr;
        k->client_ep = p->dst_ep;
        k->server_ep = p->src_ep;
        k->client_incarnation = p->dst_inc;
        k->server_incarnation = p->src_inc;
    }
    /* Only a transaction names both incarnations in every packet; a PROBE, HELLO or NAME_QUERY
     * may name the server as 0 while its answer names it. */
    if (kind != SMP_X_TXN)
        k->server_incarnation = 0;
}

static smp_exchange_t *
smp_lookup_exchange(smp_conv_t *c, const smp_xkey_t *k, gboolean create)
{
    smp_exchange_t *x = (smp_exchange_t *)wmem_map_lookup(c->exchanges, k);

    if (!x && create) {
        smp_xkey_t *key = wmem_new(wmem_file_scope(), smp_xkey_t);
        *key = *k;
        x = wmem_new0(wmem_file_scope(), smp_exchange_t);
        x->reasm_id = smp_next_reasm_id++;
        x->stream = smp_next_stream++;
        wmem_map_insert(c->exchanges, key, x);
    }
    return x;
}

static guint32
smp_first_frame(wmem_map_t *map, const void *key, size_t key_len, guint32 frame)
{
    gpointer v = wmem_map_lookup(map, key);
    void *copy;

    if (v) return GPOINTER_TO_UINT(v);
    copy = wmem_memdup(wmem_file_scope(), key, key_len);
    wmem_map_insert(map, copy, GUINT_TO_POINTER(frame));
    return 0;
}

/* Returns the frame this packet is a network copy of (0 if none) and remembers this one. */
static guint32
smp_note_copy(wmem_map_t *map, const smp_dupkey_t *key, packet_info *pinfo)
{
    smp_copy_t *prev = (smp_copy_t *)wmem_map_lookup(map, key);
    gboolean id_known = (key->ip_id & 0xFFFF) != 0;
    nstime_t gap;

    if (prev) {
        nstime_delta(&gap, &pinfo->abs_ts, &prev->time);
        if (id_known || (gap.secs == 0 && gap.nsecs >= 0 && gap.nsecs < SMP_DUPLICATE_WINDOW_NS))
            return prev->frame;
        /* a resend: later copies of it are compared with it */
        prev->frame = pinfo->num;
        prev->time = pinfo->abs_ts;
        return 0;
    }
    prev = wmem_new(wmem_file_scope(), smp_copy_t);
    prev->frame = pinfo->num;
    prev->time = pinfo->abs_ts;
    wmem_map_insert(map, wmem_memdup(wmem_file_scope(), key, sizeof(*key)), prev);
    return 0;
}

static void
smp_set_once(guint32 *slot, guint32 frame)
{
    if (*slot == 0) *slot = frame;
}

/* The exchange kind and number a packet belongs to, and who started it. */
static gboolean
smp_exchange_of(const smp_packet_t *p, guint8 *kind, guint32 *id, gboolean *from_client)
{
    switch (p->type) {
    case SMP_REQUEST: case SMP_REPLY: case SMP_PULL: case SMP_DATA: case SMP_CANCEL:
    case SMP_PULSE:
        *kind = SMP_X_TXN; *id = p->txn; *from_client = p->from_client;
        return TRUE;
    case SMP_PROBE: case SMP_PROBE_ACK:
        *kind = SMP_X_PROBE; *id = p->id; *from_client = (p->type == SMP_PROBE);
        return TRUE;
    case SMP_HELLO: case SMP_HELLO_ACK:
        *kind = SMP_X_HELLO; *id = p->id; *from_client = (p->type == SMP_HELLO);
        return TRUE;
    case SMP_NAME_QUERY: case SMP_NAME_REPLY:
        *kind = SMP_X_NAME; *id = p->id; *from_client = (p->type == SMP_NAME_QUERY);
        return TRUE;
    case SMP_CHALLENGE: case SMP_CHALLENGE_ACK:
        /* the asking side (a server) opens it, as a probe's sender does */
        *kind = SMP_X_CHALLENGE; *id = p->id; *from_client = (p->type == SMP_CHALLENGE);
        return TRUE;
    default:
        return FALSE;
    }
}

/* An exchange this frame acknowledges: its stream is shown too, so that a stream's filter
 * shows the acknowledgements of its packets. */
static void
smp_note_acked_stream(smp_frame_t *f, const smp_exchange_t *x)
{
    guint32 i;

    if (f->x == x) return;
    for (i = 0; i < f->acked_stream_count; i++)
        if (f->acked_streams[i] == x->stream) return;
    if (f->acked_stream_count < array_length(f->acked_streams))
        f->acked_streams[f->acked_stream_count++] = x->stream;
}

static void
smp_track_acks(tvbuff_t *tvb, packet_info *pinfo, smp_conv_t *c, const smp_packet_t *p,
               smp_frame_t *f)
{
    smp_xkey_t k;
    smp_exchange_t *x;
    guint i, count;

    /* The header's ack: the sender (a client) has the whole reply of its own transaction. */
    if (p->ack != 0) {
        smp_make_xkey(&k, p, SMP_X_TXN, p->ack, TRUE);
        x = smp_lookup_exchange(c, &k, FALSE);
        if (x) {
            f->acked_frame = x->response_frame;
            smp_set_once(&x->reply_acked_frame, pinfo->num);
            smp_note_acked_stream(f, x);
        }
    }
    if (p->type != SMP_ACK) return;
    count = tvb_get_ntohs(tvb, SMP_HEADER_BYTES);
    for (i = 0; i < count && i < SMP_ACK_ENTRIES_MAX; i++) {
        guint32 txn = tvb_get_ntohl(tvb, SMP_HEADER_BYTES + 4 + 8 * i);
        guint8 kind = tvb_get_guint8(tvb, SMP_HEADER_BYTES + 8 + 8 * i);
        /* kind 2 travels client -> server; kinds 1, 3, 4 server -> client. */
        smp_make_xkey(&k, p, SMP_X_TXN, txn, kind == SMP_ACK_REPLY_RECEIVED);
        x = smp_lookup_exchange(c, &k, FALSE);
        if (!x) continue;
        smp_note_acked_stream(f, x);
        switch (kind) {
        case SMP_ACK_REQUEST_RECEIVED:
            f->ack_entry_frames[i] = x->request_frame;
            smp_set_once(&x->request_acked_frame, pinfo->num);
            break;
        case SMP_ACK_REPLY_RECEIVED:
            f->ack_entry_frames[i] = x->response_frame;
            smp_set_once(&x->reply_acked_frame, pinfo->num);
            break;
        case SMP_ACK_CANCEL_RECEIVED:
            f->ack_entry_frames[i] = x->cancel_frame;
            smp_set_once(&x->cancel_acked_frame, pinfo->num);
            break;
        case SMP_ACK_PULSE_RECEIVED:
            f->ack_entry_frames[i] = x->request_frame;
            smp_set_once(&x->pulse_acked_frame, pinfo->num);
            break;
        default:
            break;
        }
    }
}

/* Out of window: a txn below what the client already declared finished (and not a repeat), or
 * further above txn_low than the server's granted window of transactions. */
static gboolean
smp_check_window(smp_conv_t *c, const smp_packet_t *p, gboolean repeat, packet_info *pinfo)
{
    smp_xkey_t k;
    smp_window_t *w;
    gboolean out = FALSE;
    nstime_t gap;

    if (p->type != SMP_REQUEST && p->type != SMP_PULSE) return FALSE;
    smp_make_xkey(&k, p, 0, 0, TRUE);
    k.client_incarnation = 0;
    k.server_incarnation = 0;
    w = (smp_window_t *)wmem_map_lookup(c->windows, &k);
    if (!w) {
        smp_xkey_t *key = wmem_new(wmem_file_scope(), smp_xkey_t);
        *key = k;
        w = wmem_new0(wmem_file_scope(), smp_window_t);
        wmem_map_insert(c->windows, key, w);
    }
    /* Another life of either side, or a client silent past the numbering lapse: its
     * numbering starts anew (SPEC 5.1, 5.5), and what was finished before says nothing. */
    nstime_delta(&gap, &pinfo->abs_ts, &w->last_seen);
    if (w->txn_low != 0 && (w->client_inc != p->src_inc || w->server_inc != p->dst_inc ||
                            gap.secs >= SMP_NUMBERING_LAPSE_S))
        w->txn_low = 0;
    w->client_inc = p->src_inc;
    w->server_inc = p->dst_inc;
    w->last_seen = pinfo->abs_ts;
    if (!repeat && w->txn_low != 0 && smp_txn_before(p->txn, w->txn_low)) out = TRUE;
    if (w->window_txns != 0 && smp_txn_dist(p->txn_low, p->txn) >= w->window_txns)
        out = TRUE;
    if (w->txn_low == 0 || smp_txn_before(w->txn_low, p->txn_low)) w->txn_low = p->txn_low;
    return out;
}

/* HELLO / HELLO_ACK grant the RECEIVER a window toward the sender: remember it per client. */
static void
smp_note_window(smp_conv_t *c, const smp_packet_t *p)
{
    smp_xkey_t k;
    smp_window_t *w;

    if (p->type != SMP_HELLO && p->type != SMP_HELLO_ACK) return;
    smp_make_xkey(&k, p, 0, 0, FALSE);  /* the receiver is the client of later requests */
    k.client_incarnation = 0;           /* HELLO may name incarnation 0: key without it */
    k.server_incarnation = 0;
    w = (smp_window_t *)wmem_map_lookup(c->windows, &k);
    if (!w) {
        smp_xkey_t *key = wmem_new(wmem_file_scope(), smp_xkey_t);
        *key = k;
        w = wmem_new0(wmem_file_scope(), smp_window_t);
        wmem_map_insert(c->windows, key, w);
    }
    w->window_txns = p->hello_window_txns;
}

/* A sender's new incarnation: it rebooted. As the engine, only a HELLO or HELLO_ACK (a new life
 * says one first) or a RESET (the new life answering its old peers) starts one (SPEC 5.5); a
 * late packet of an earlier life changes nothing. */
static void
smp_track_life(packet_info *pinfo, smp_conv_t *c, const smp_packet_t *p, smp_frame_t *f)
{
    gint64 k = ((gint64)p->src_addr << 16) | p->src_ep;
    smp_life_t *life = (smp_life_t *)wmem_map_lookup(c->lives, &k);

    if (p->src_inc == 0) return;
    if (!life) {
        gint64 *key = wmem_new(wmem_file_scope(), gint64);
        *key = k;
        life = wmem_new0(wmem_file_scope(), smp_life_t);
        life->incarnation = p->src_inc;
        wmem_map_insert(c->lives, key, life);
    } else if (life->incarnation != p->src_inc) {
        if (p->type != SMP_HELLO && p->type != SMP_HELLO_ACK && p->type != SMP_RESET) return;
        f->previous_life = life->incarnation;
        f->previous_life_in = life->frame;
        life->incarnation = p->src_inc;
    }
    life->frame = pinfo->num;
}

/* The service name of a channel at a server: the reserved channels' own names, else what a
 * NAME_REPLY from that server (address, endpoint, incarnation) said, else NULL. */
static const gchar *
smp_service_of(guint32 server_addr, guint16 server_ep, guint64 server_inc, guint32 channel)
{
    smp_svckey_t k;

    if (channel == SMP_NAMES_CHANNEL) return "_names";
    if (channel == SMP_STATS_CHANNEL) return "_stats";
    memset(&k, 0, sizeof(k));
    k.server_addr = server_addr;
    k.server_ep = server_ep;
    k.server_incarnation = server_inc;
    k.channel = channel;
    return (const gchar *)wmem_map_lookup(smp_services, &k);
}

/* A positive NAME_REPLY: its sender serves the name on the channel it gives. */
static void
smp_note_service(tvbuff_t *tvb, const smp_packet_t *p)
{
    smp_svckey_t *k;
    guint count;

    if (p->type != SMP_NAME_REPLY || p->error != SMP_ERR_OK) return;
    count = tvb_get_guint8(tvb, SMP_HEADER_BYTES + 6);  /* 1..32, checked by the verdict */
    k = wmem_new0(wmem_file_scope(), smp_svckey_t);
    k->server_addr = p->src_addr;
    k->server_ep = p->src_ep;
    k->server_incarnation = p->src_inc;
    k->channel = p->channel;
    wmem_map_insert(smp_services, k,
                    tvb_get_string_enc(wmem_file_scope(), tvb, SMP_HEADER_BYTES + SMP_NAME_FIXED_BYTES,
                                       count, ENC_ASCII));
}

/* Adds [start, end) to the ranges given to a message's reassembly; FALSE, changing nothing,
 * when they hold all of it already. */
static gboolean
smp_give_span(smp_spans_t *given, guint32 start, guint32 end)
{
    guint32 i, first, last;

    for (i = 0; i < given->count; i++)
        if (given->v[i].start <= start && end <= given->v[i].end)
            return FALSE;
    /* the ranges it touches or overlaps, [first, last), merge into one */
    for (first = 0; first < given->count && given->v[first].end < start; first++)
        ;
    for (last = first; last < given->count && given->v[last].start <= end; last++) {
        start = MIN(start, given->v[last].start);
        end = MAX(end, given->v[last].end);
    }
    if (last == first) {
        /* a range of its own: make room at `first` */
        if (given->count == given->room) {
            given->room = given->room ? 2 * given->room : 4;
            given->v = (smp_span_t *)wmem_realloc(wmem_file_scope(), given->v,
                                                  given->room * sizeof(smp_span_t));
        }
        memmove(&given->v[first + 1], &given->v[first],
                (given->count - first) * sizeof(smp_span_t));
        given->count++;
    } else {
        memmove(&given->v[first + 1], &given->v[last],
                (given->count - last) * sizeof(smp_span_t));
        given->count -= last - first - 1;
    }
    given->v[first].start = start;
    given->v[first].end = end;
    return TRUE;
}

/* PULL and DATA: a DATA answers the latest PULL before it of its transaction that asked for
 * bytes of the same message at its offset. A network copy of a PULL is no PULL of its own. */
static void
smp_track_pull(tvbuff_t *tvb, packet_info *pinfo, const smp_packet_t *p, smp_frame_t *f)
{
    smp_exchange_t *x = f->x;
    smp_pull_t *pl;
    guint i;

    if (p->type == SMP_PULL && f->duplicate_of == 0) {
        pl = wmem_new0(wmem_file_scope(), smp_pull_t);
        pl->frame = pinfo->num;
        pl->what = p->what;
        pl->count = MIN(tvb_get_guint8(tvb, SMP_HEADER_BYTES + 5), SMP_PULL_RANGES_MAX);
        for (i = 0; i < pl->count; i++) {
            pl->offset[i] = tvb_get_ntohl(tvb, SMP_HEADER_BYTES + 8 + 8 * i);
            pl->bytes[i] = tvb_get_ntohl(tvb, SMP_HEADER_BYTES + 12 + 8 * i);
        }
        pl->older = x->pulls;
        x->pulls = pl;
        f->pull = pl;
    } else if (p->type == SMP_DATA) {
        for (pl = x->pulls; pl; pl = pl->older) {
            if (pl->what != p->what) continue;
            for (i = 0; i < pl->count; i++)
                if (p->offset >= pl->offset[i] && p->offset - pl->offset[i] < pl->bytes[i])
                    break;
            if (i < pl->count) break;
        }
        if (pl) {
            f->pull_in = pl->frame;
            if (!pl->data_frames)
                pl->data_frames = wmem_array_new(wmem_file_scope(), sizeof(guint32));
            wmem_array_append_one(pl->data_frames, pinfo->num);
        }
    }
}

static smp_frame_t *
smp_track(tvbuff_t *tvb, packet_info *pinfo, smp_packet_t *p)
{
    smp_conv_t *c = smp_get_conv(pinfo);
    smp_frame_t *f = wmem_new0(wmem_file_scope(), smp_frame_t);
    smp_dupkey_t dk;
    smp_segkey_t sk;
    smp_xkey_t k;
    guint8 kind;
    guint32 id;
    gboolean from_client;
    smp_exchange_t *x = NULL;
    gboolean repeat = FALSE;

    /* Exact repeat of an earlier packet (the network duplicated it, or the sender resent it
     * byte for byte). */
    memset(&dk, 0, sizeof(dk));
    dk.src_addr = p->src_addr;
    dk.dst_addr = p->dst_addr;
    dk.length = tvb_captured_length(tvb);
    dk.ip_id = p->ip_id;
    dk.crc = crc32_ccitt_tvb(tvb, dk.length);
    f->duplicate_of = smp_note_copy(c->repeats, &dk, pinfo);

    if (smp_exchange_of(p, &kind, &id, &from_client)) {
        smp_make_xkey(&k, p, kind, id, from_client);
        x = smp_lookup_exchange(c, &k, TRUE);

        /* The same part again: (exchange, type, what, offset). */
        memset(&sk, 0, sizeof(sk));
        sk.x = k;
        sk.type = p->type;
        sk.what = p->what;
        sk.offset = p->offset;
        sk.error = p->type == SMP_REPLY ? p->error : 0;
        f->retransmission_of = smp_first_frame(c->segments, &sk, sizeof(sk), pinfo->num);
        repeat = f->retransmission_of != 0 || f->duplicate_of != 0;

        switch (p->type) {
        case SMP_REQUEST:
        case SMP_PULSE:
        case SMP_PROBE:
        case SMP_HELLO:
        case SMP_NAME_QUERY:
        case SMP_CHALLENGE:
            if (x->request_frame == 0) {
                x->request_frame = pinfo->num;
                x->request_time = pinfo->abs_ts;
            }
            if (p->type == SMP_REQUEST) {
                x->request_total = p->total;
                x->have_request_total = TRUE;
            }
            break;
        case SMP_REPLY:
            /* busy (3) is not final: the client will send again */
            if (p->error != SMP_ERR_BUSY) smp_set_once(&x->response_frame, pinfo->num);
            smp_set_once(&x->request_acked_frame, pinfo->num);
            if (p->error == SMP_ERR_OK) {
                x->reply_total = p->total;
                x->have_reply_total = TRUE;
            }
            break;
        case SMP_PROBE_ACK:
        case SMP_HELLO_ACK:
        case SMP_NAME_REPLY:
        case SMP_CHALLENGE_ACK:
            smp_set_once(&x->response_frame, pinfo->num);
            break;
        case SMP_PULL:
            if (p->what == SMP_WHAT_REQUEST) smp_set_once(&x->request_acked_frame, pinfo->num);
            break;
        case SMP_CANCEL:
            smp_set_once(&x->cancel_frame, pinfo->num);
            break;
        default:
            break;
        }
        if (p->type == SMP_REQUEST || p->type == SMP_PULSE) {
            x->channel = p->channel;
            x->have_channel = TRUE;
        }
        if (kind == SMP_X_TXN && x->have_channel)
            f->service = smp_service_of(k.server_addr, k.server_ep, k.server_incarnation,
                                        x->channel);
        f->x = x;
        smp_track_pull(tvb, pinfo, p, f);
    }
    smp_note_service(tvb, p);
    smp_track_life(pinfo, c, p, f);
    smp_track_acks(tvb, pinfo, c, p, f);
    smp_note_window(c, p);
    f->out_of_window = smp_check_window(c, p, repeat, pinfo);

    /* Give a part to the reassembly when it brings bytes not given yet (a repeat of the same
     * part adds nothing; a window sent again in larger parts after a path-MTU increase does,
     * although its parts are retransmissions of the smaller ones at the same offsets), only
     * when the message has more than one part and its size is known. A network copy never. */
    if (x && p->payload_bytes > 0 && f->duplicate_of == 0 && p->type != SMP_PROBE &&
        (p->type == SMP_REQUEST || p->type == SMP_REPLY || p->type == SMP_DATA)) {
        gboolean req = (p->type == SMP_REQUEST) || (p->type == SMP_DATA && p->what == SMP_WHAT_REQUEST);
        gboolean have_total = req ? x->have_request_total : x->have_reply_total;
        guint32 total = req ? x->request_total : x->reply_total;
        f->reassemble = have_total && p->payload_bytes < total &&
                        (guint64)p->offset + p->payload_bytes <= total &&
                        smp_give_span(&x->given[req ? 0 : 1], p->offset,
                                      p->offset + p->payload_bytes);
    }
    return f;
}

/* ---- Tree ---------------------------------------------------------------------------------- */
static void
smp_fmt_deadline(gchar *buf, guint32 v)
{
    if (v == SMP_NO_DEADLINE)
        snprintf(buf, ITEM_LABEL_LENGTH, "none (0xffffffff)");
    else
        snprintf(buf, ITEM_LABEL_LENGTH, "%u us (%u.%06u s)", v, v / 1000000, v % 1000000);
}

static void
smp_add_link(proto_tree *tree, int hf, tvbuff_t *tvb, guint32 frame)
{
    if (frame != 0) {
        proto_item *it = proto_tree_add_uint(tree, hf, tvb, 0, 0, frame);
        proto_item_set_generated(it);
    }
}

/* Adds the payload; when the message has several parts, reassembles it and shows the whole. */
static void
smp_add_payload(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, const smp_packet_t *p,
                const smp_frame_t *f)
{
    proto_item *it;
    tvbuff_t *msg_tvb = NULL;
    gboolean req;
    guint32 total, id;

    /* Payload sizes come from the body checks, which ran on a fully captured packet only. */
    if (p->payload_bytes == 0 ||
        tvb_captured_length_remaining(tvb, p->payload_offset) < (gint)p->payload_bytes)
        return;
    proto_tree_add_item(tree, hf_smp_payload, tvb, p->payload_offset, p->payload_bytes, ENC_NA);
    it = proto_tree_add_uint(tree, hf_smp_payload_bytes, tvb, p->payload_offset, p->payload_bytes,
                             p->payload_bytes);
    proto_item_set_generated(it);

    req = (p->type == SMP_REQUEST) || (p->type == SMP_DATA && p->what == SMP_WHAT_REQUEST);
    if ((p->type == SMP_REQUEST || p->type == SMP_REPLY) && p->verdict == SMP_V_OK) {
        /* One packet with the whole message: it is the message (not one the receiver drops: a
         * forged packet's bytes, its MAC wrong, are nobody's message). */
        if (p->offset == 0 && p->payload_bytes == p->total)
            msg_tvb = tvb_new_subset_length(tvb, p->payload_offset, p->payload_bytes);
    }
    if (!msg_tvb && f && f->reassemble && smp_reassemble && f->x) {
        gboolean save_fragmented = pinfo->fragmented;
        fragment_head *fh;
        total = req ? f->x->request_total : f->x->reply_total;
        id = f->x->reasm_id * 2 + (req ? 0 : 1);
        pinfo->fragmented = TRUE;
        fh = fragment_add_check(&smp_reassembly_table, tvb, p->payload_offset, pinfo, id, NULL,
                                p->offset, p->payload_bytes,
                                (guint64)p->offset + p->payload_bytes < total);
        msg_tvb = process_reassembled_data(tvb, p->payload_offset, pinfo,
                                           req ? "Reassembled request" : "Reassembled reply",
                                           fh, &smp_frag_items, NULL, tree);
        pinfo->fragmented = save_fragmented;
        if (msg_tvb)
            col_append_fstr(pinfo->cinfo, COL_INFO, " [%s reassembled, %u B]",
                            req ? "request" : "reply", tvb_reported_length(msg_tvb));
    }
    if (msg_tvb) {
        it = proto_tree_add_item(tree, hf_smp_message, msg_tvb, 0, -1, ENC_NA);
        proto_item_append_text(it, " (%s, %u bytes)", req ? "request" : "reply",
                               tvb_reported_length(msg_tvb));
    }
}

/* The service of a transaction's packet in the Info column (a REQUEST to a reserved channel
 * shows its name as the channel already). */
static void
smp_info_service(packet_info *pinfo, const smp_packet_t *p, const smp_frame_t *f)
{
    if (f && f->service && f->x &&
        !(p->type == SMP_REQUEST && f->x->channel >= SMP_RESERVED_CHANNELS))
        col_append_fstr(pinfo->cinfo, COL_INFO, " svc=\"%s\"",
                        format_text(pinfo->pool, (const guchar *)f->service, strlen(f->service)));
}

static void
smp_info_range(packet_info *pinfo, guint32 off, guint32 len, guint32 total)
{
    if (len == total && off == 0)
        col_append_fstr(pinfo->cinfo, COL_INFO, " %u B", total);
    else
        col_append_fstr(pinfo->cinfo, COL_INFO, " [%u,%u) of %u B", off, off + len, total);
}

/* Dissects the body of a packet that passed the checks far enough to have its type's size. */
static void
smp_dissect_body(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, smp_packet_t *p,
                 guint have, const smp_frame_t *f)
{
    const int b = SMP_HEADER_BYTES;
    proto_item *it;
    proto_tree *sub;
    guint32 v, count, i;
    gchar *name;

    switch (p->type) {
    case SMP_HELLO:
    case SMP_HELLO_ACK:
        if (have < SMP_HELLO_BYTES) return;
        proto_tree_add_item_ret_uint(tree, hf_smp_window_bytes, tvb, b, 4, ENC_BIG_ENDIAN, &v);
        col_append_fstr(pinfo->cinfo, COL_INFO, " nonce=%u window %u B", p->id, v);
        proto_tree_add_item_ret_uint(tree, hf_smp_window_txns, tvb, b + 4, 2, ENC_BIG_ENDIAN, &v);
        col_append_fstr(pinfo->cinfo, COL_INFO, "/%u txns", v);
        proto_tree_add_item_ret_uint(tree, hf_smp_mtu, tvb, b + 6, 2, ENC_BIG_ENDIAN, &v);
        col_append_fstr(pinfo->cinfo, COL_INFO, " mtu %u", v);
        proto_tree_add_item(tree, hf_smp_message_bytes_max, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_nonce, tvb, b + 12, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_eager_bytes_max, tvb, b + 16, 4, ENC_BIG_ENDIAN);
        break;
    case SMP_REQUEST:
        if (have < SMP_REQUEST_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_txn_low, tvb, b + 4, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_channel, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_total_bytes, tvb, b + 12, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_eager_bytes, tvb, b + 16, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_offset, tvb, b + 20, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reply_bytes_max, tvb, b + 24, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_deadline, tvb, b + 28, 4, ENC_BIG_ENDIAN);
        if (p->channel == SMP_NAMES_CHANNEL)
            col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u ch=_names", p->txn);
        else if (p->channel == SMP_STATS_CHANNEL)
            col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u ch=_stats", p->txn);
        else if (p->channel >= SMP_RESERVED_CHANNELS)
            col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u ch=0x%08x", p->txn, p->channel);
        else
            col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u ch=%u", p->txn, p->channel);
        smp_info_service(pinfo, p, f);
        if (p->eager < p->total && p->payload_bytes == 0)
            col_append_fstr(pinfo->cinfo, COL_INFO, " %u B (all pulled)", p->total);
        else
            smp_info_range(pinfo, p->offset, p->payload_bytes, p->total);
        if (p->eager < p->total && p->payload_bytes != 0)
            col_append_fstr(pinfo->cinfo, COL_INFO, " eager %u", p->eager);
        smp_add_payload(tvb, pinfo, tree, p, f);
        break;
    case SMP_REPLY:
        if (have < SMP_REPLY_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        it = proto_tree_add_item(tree, hf_smp_error, tvb, b + 4, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 6, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_status, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_total_bytes, tvb, b + 12, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_eager_bytes, tvb, b + 16, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_offset, tvb, b + 20, 4, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u", p->txn);
        smp_info_service(pinfo, p, f);
        if (p->error != SMP_ERR_OK) {
            col_append_fstr(pinfo->cinfo, COL_INFO, " error=%s",
                            val_to_str_const(p->error, smp_error_vals, "unknown"));
            expert_add_info_format(pinfo, it, &ei_smp_error_reply, "Transaction failed: %s",
                                   val_to_str(p->error, smp_error_vals, "unknown error %u"));
        } else {
            col_append_fstr(pinfo->cinfo, COL_INFO, " status=%u",
                            tvb_get_ntohl(tvb, b + 8));
            smp_info_range(pinfo, p->offset, p->payload_bytes, p->total);
        }
        smp_add_payload(tvb, pinfo, tree, p, f);
        break;
    case SMP_PULL:
        if (have < SMP_PULL_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_what, tvb, b + 4, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item_ret_uint(tree, hf_smp_range_count, tvb, b + 5, 1, ENC_BIG_ENDIAN,
                                     &count);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 6, 2, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u", p->txn);
        smp_info_service(pinfo, p, f);
        col_append_fstr(pinfo->cinfo, COL_INFO, " %s", p->what == SMP_WHAT_REPLY ? "reply" : "request");
        /* Bounded by the spec's limit and by the bytes present. */
        for (i = 0; i < count && i < SMP_PULL_RANGES_MAX && b + 8 + 8 * i + 8 <= SMP_HEADER_BYTES + have;
             i++) {
            guint32 off = tvb_get_ntohl(tvb, b + 8 + 8 * i);
            guint32 len = tvb_get_ntohl(tvb, b + 12 + 8 * i);
            it = proto_tree_add_none_format(tree, hf_smp_range, tvb, b + 8 + 8 * i, 8,
                                            "Range %u: [%u, %u) (%u bytes)", i + 1, off,
                                            (guint32)MIN((guint64)off + len, G_MAXUINT32), len);
            sub = proto_item_add_subtree(it, ett_smp_range);
            proto_tree_add_item(sub, hf_smp_range_offset, tvb, b + 8 + 8 * i, 4, ENC_BIG_ENDIAN);
            proto_tree_add_item(sub, hf_smp_range_bytes, tvb, b + 12 + 8 * i, 4, ENC_BIG_ENDIAN);
            col_append_fstr(pinfo->cinfo, COL_INFO, " [%u,%u)", off,
                            (guint32)MIN((guint64)off + len, G_MAXUINT32));
        }
        break;
    case SMP_DATA:
        if (have < SMP_DATA_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_what, tvb, b + 4, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 5, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 6, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_offset, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u", p->txn);
        smp_info_service(pinfo, p, f);
        col_append_fstr(pinfo->cinfo, COL_INFO, " %s [%u,%u)",
                        p->what == SMP_WHAT_REPLY ? "reply" : "request", p->offset,
                        (guint32)MIN((guint64)p->offset + p->payload_bytes, G_MAXUINT32));
        if (f && f->x) {
            gboolean req = p->what == SMP_WHAT_REQUEST;
            if (req ? f->x->have_request_total : f->x->have_reply_total)
                col_append_fstr(pinfo->cinfo, COL_INFO, " of %u B",
                                req ? f->x->request_total : f->x->reply_total);
        }
        smp_add_payload(tvb, pinfo, tree, p, f);
        break;
    case SMP_ACK:
        if (have < SMP_ACK_FIXED_BYTES) return;
        proto_tree_add_item_ret_uint(tree, hf_smp_ack_count, tvb, b, 2, ENC_BIG_ENDIAN, &count);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 2, 2, ENC_BIG_ENDIAN);
        for (i = 0; i < count && i < SMP_ACK_ENTRIES_MAX && b + 4 + 8 * i + 8 <= SMP_HEADER_BYTES + have;
             i++) {
            guint32 txn = tvb_get_ntohl(tvb, b + 4 + 8 * i);
            guint8 kind = tvb_get_guint8(tvb, b + 8 + 8 * i);
            it = proto_tree_add_none_format(tree, hf_smp_ack_entry, tvb, b + 4 + 8 * i, 8,
                                            "Entry %u: %s, txn %u", i + 1,
                                            val_to_str(kind, smp_ack_kind_vals, "kind %u"), txn);
            sub = proto_item_add_subtree(it, ett_smp_ack_entry);
            proto_tree_add_item(sub, hf_smp_ack_txn, tvb, b + 4 + 8 * i, 4, ENC_BIG_ENDIAN);
            proto_tree_add_item(sub, hf_smp_ack_kind, tvb, b + 8 + 8 * i, 1, ENC_BIG_ENDIAN);
            proto_tree_add_item(sub, hf_smp_reserved, tvb, b + 9 + 8 * i, 1, ENC_BIG_ENDIAN);
            proto_tree_add_item(sub, hf_smp_reserved, tvb, b + 10 + 8 * i, 2, ENC_BIG_ENDIAN);
            if (f) smp_add_link(sub, hf_smp_acked_frame, tvb, f->ack_entry_frames[i]);
            col_append_fstr(pinfo->cinfo, COL_INFO, "%s%s txn=%u", i ? ", " : " ",
                            val_to_str(kind, smp_ack_kind_vals, "kind %u"), txn);
        }
        break;
    case SMP_CANCEL:
        if (have < SMP_CANCEL_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_cancel_reason, tvb, b + 4, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 6, 2, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u", p->txn);
        smp_info_service(pinfo, p, f);
        col_append_fstr(pinfo->cinfo, COL_INFO, " %s",
                        val_to_str(p->error, smp_error_vals, "reason %u"));
        break;
    case SMP_PULSE:
        if (have < SMP_PULSE_BYTES) return;
        proto_tree_add_item(tree, hf_smp_txn, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_txn_low, tvb, b + 4, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_channel, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_pulse_code, tvb, b + 12, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 13, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_pulse_source, tvb, b + 14, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_pulse_value, tvb, b + 16, 4, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " txn=%u ch=%u", p->txn, p->channel);
        smp_info_service(pinfo, p, f);
        col_append_fstr(pinfo->cinfo, COL_INFO, " code=%d value=%u src=%u",
                        (gint8)tvb_get_guint8(tvb, b + 12), tvb_get_ntohl(tvb, b + 16),
                        tvb_get_ntohs(tvb, b + 14));
        break;
    case SMP_PROBE:
    case SMP_PROBE_ACK:
        if (have < SMP_PROBE_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_probe_seq, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item_ret_uint(tree, hf_smp_probe_bytes, tvb, b + 4, 2, ENC_BIG_ENDIAN, &v);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 6, 2, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " seq=%u %u B", p->id, v);
        if (p->type == SMP_PROBE && have > SMP_PROBE_FIXED_BYTES)
            proto_tree_add_item(tree, hf_smp_padding, tvb, b + SMP_PROBE_FIXED_BYTES,
                                have - SMP_PROBE_FIXED_BYTES, ENC_NA);
        break;
    case SMP_RESET:
        if (have < SMP_RESET_BYTES) return;
        proto_tree_add_item(tree, hf_smp_named_incarnation, tvb, b, 8, ENC_BIG_ENDIAN);
        it = proto_tree_add_item(tree, hf_smp_reset_reason, tvb, b + 8, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 10, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 12, 4, ENC_BIG_ENDIAN);
        if (tvb_get_ntohs(tvb, b + 8) == 2) {
            /* the sender is alive but has no room for the receiver in its peer table now */
            col_append_str(pinfo->cinfo, COL_INFO, " refused: no peer slot, try later");
            expert_add_info(pinfo, it, &ei_smp_refused);
        } else {
            col_append_fstr(pinfo->cinfo, COL_INFO, " incarnation 0x%016" PRIx64 " unknown",
                            tvb_get_ntoh64(tvb, b));
            expert_add_info(pinfo, it, &ei_smp_reset);
        }
        break;
    case SMP_NAME_QUERY:
    case SMP_NAME_REPLY:
        if (have < SMP_NAME_FIXED_BYTES) return;
        proto_tree_add_item(tree, hf_smp_query, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_error, tvb, b + 4, 2, ENC_BIG_ENDIAN);
        proto_tree_add_item_ret_uint(tree, hf_smp_name_bytes, tvb, b + 6, 1, ENC_BIG_ENDIAN, &count);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 7, 1, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_channel, tvb, b + 8, 4, ENC_BIG_ENDIAN);
        count = MIN(count, have - SMP_NAME_FIXED_BYTES);
        proto_tree_add_item_ret_display_string(tree, hf_smp_name, tvb, b + SMP_NAME_FIXED_BYTES,
                                               count, ENC_ASCII, pinfo->pool, &name);
        col_append_fstr(pinfo->cinfo, COL_INFO, " id=%u \"%s\"", p->id, name);
        if (p->type == SMP_NAME_REPLY) {
            if (p->error == SMP_ERR_OK)
                col_append_fstr(pinfo->cinfo, COL_INFO, " -> ch=%u", p->channel);
            else
                col_append_fstr(pinfo->cinfo, COL_INFO, " %s",
                                val_to_str(p->error, smp_error_vals, "error %u"));
        }
        break;
    case SMP_CHALLENGE:
        /* a keyed server asks a client for its numbering before it takes a request (SPEC 3.4) */
        if (have < SMP_CHALLENGE_BYTES) return;
        proto_tree_add_item(tree, hf_smp_nonce, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 4, 4, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " nonce=%u", p->id);
        break;
    case SMP_CHALLENGE_ACK:
        if (have < SMP_CHALLENGE_ACK_BYTES) return;
        proto_tree_add_item(tree, hf_smp_nonce, tvb, b, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_txn_low, tvb, b + 4, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item_ret_uint(tree, hf_smp_txn_next, tvb, b + 8, 4, ENC_BIG_ENDIAN, &v);
        proto_tree_add_item(tree, hf_smp_reserved, tvb, b + 12, 4, ENC_BIG_ENDIAN);
        proto_tree_add_item(tree, hf_smp_open_txns, tvb, b + 16, 8, ENC_BIG_ENDIAN);
        col_append_fstr(pinfo->cinfo, COL_INFO, " nonce=%u low=%u next=%u open=0x%" PRIx64,
                        p->id, p->txn_low, v, tvb_get_ntoh64(tvb, b + 16));
        break;
    default:
        break;
    }
}

static void
smp_add_tracking(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *ti,
                 const smp_packet_t *p, const smp_frame_t *f, smp_tap_info_t *tap)
{
    proto_item *it;
    const smp_exchange_t *x = f->x;
    guint32 i;

    /* The stream of its own exchange first, then those of the exchanges it acknowledges. */
    if (x) {
        it = proto_tree_add_uint(tree, hf_smp_stream, tvb, 0, 0, x->stream);
        proto_item_set_generated(it);
    }
    for (i = 0; i < f->acked_stream_count; i++) {
        it = proto_tree_add_uint(tree, hf_smp_stream, tvb, 0, 0, f->acked_streams[i]);
        proto_item_set_generated(it);
        proto_item_append_text(it, " (acknowledged)");
    }

    if (f->previous_life_in) {
        it = proto_tree_add_uint(tree, hf_smp_previous_life_in, tvb, 0, 0, f->previous_life_in);
        proto_item_set_generated(it);
        expert_add_info_format(pinfo, it, &ei_smp_rebooted,
                               "Sender rebooted: incarnation 0x%016" PRIx64 " (last seen in frame %u) "
                               "is now 0x%016" PRIx64, f->previous_life, f->previous_life_in,
                               p->src_inc);
    }
    if (f->service) {
        /* the same field as a NAME_QUERY's or NAME_REPLY's name: one filter finds both */
        it = proto_tree_add_string(tree, hf_smp_name, tvb, 0, 0, f->service);
        proto_item_set_generated(it);
        proto_item_append_text(it, " (channel %u)", x ? x->channel : 0);
    }
    if (x) {
        gboolean opener = (p->type == SMP_REQUEST || p->type == SMP_PULSE ||
                           p->type == SMP_PROBE || p->type == SMP_HELLO ||
                           p->type == SMP_NAME_QUERY || p->type == SMP_CHALLENGE);
        if (opener) {
            smp_add_link(tree, hf_smp_response_in, tvb, x->response_frame);
            if (x->request_frame != pinfo->num)
                smp_add_link(tree, hf_smp_request_in, tvb, x->request_frame);
        } else {
            smp_add_link(tree, hf_smp_request_in, tvb, x->request_frame);
            if (x->response_frame != pinfo->num && p->type != SMP_CANCEL &&
                p->type != SMP_PULL && p->type != SMP_DATA)
                smp_add_link(tree, hf_smp_response_in, tvb, x->response_frame);
        }
        /* The response time on the first final answer only (not on a reply's later parts, its
         * repeats, or a `busy`): one figure per transaction, as -z and io,stat count it. */
        if ((p->type == SMP_REPLY || p->type == SMP_PROBE_ACK || p->type == SMP_HELLO_ACK ||
             p->type == SMP_NAME_REPLY || p->type == SMP_CHALLENGE_ACK) && x->request_frame != 0 &&
            x->request_frame < pinfo->num && x->response_frame == pinfo->num) {
            nstime_t delta;
            nstime_delta(&delta, &pinfo->abs_ts, &x->request_time);
            it = proto_tree_add_time(tree, hf_smp_response_time, tvb, 0, 0, &delta);
            proto_item_set_generated(it);
            tap->has_time = TRUE;
            tap->time_us = (guint32)MIN((guint64)delta.secs * 1000000 + delta.nsecs / 1000,
                                        G_MAXINT32);
            tap->exchange_type = p->type == SMP_REPLY ? SMP_REQUEST : p->type - 1;
            tap->has_channel = x->have_channel;
            tap->channel = x->channel;
            tap->service = f->service;
            /* As ICMP echo does: the pair is visible in the packet list itself. */
            if (x->response_frame == pinfo->num)
                col_append_fstr(pinfo->cinfo, COL_INFO, " (request in %u, %.3f ms)",
                                x->request_frame, nstime_to_msec(&delta));
        }
        if (x->request_frame == pinfo->num && x->response_frame != 0)
            col_append_fstr(pinfo->cinfo, COL_INFO, " (response in %u)", x->response_frame);
        if (p->type == SMP_REPLY)
            smp_add_link(tree, hf_smp_reply_acked_in, tvb, x->reply_acked_frame);
        if (p->type == SMP_DATA)
            smp_add_link(tree, hf_smp_pull_in, tvb, f->pull_in);
        if (f->pull && f->pull->data_frames) {
            for (i = 0; i < wmem_array_get_count(f->pull->data_frames); i++)
                smp_add_link(tree, hf_smp_data_in, tvb,
                             *(guint32 *)wmem_array_index(f->pull->data_frames, i));
        }
    }
    if (p->ack != 0)
        smp_add_link(tree, hf_smp_acked_frame, tvb, f->acked_frame);
    if (f->duplicate_of) {
        it = proto_tree_add_uint(tree, hf_smp_duplicate_of, tvb, 0, 0, f->duplicate_of);
        proto_item_set_generated(it);
        expert_add_info_format(pinfo, it, &ei_smp_duplicate,
                               "Duplicate of frame %u (identical packet)", f->duplicate_of);
        col_prepend_fstr(pinfo->cinfo, COL_INFO, "[Duplicate] ");
        tap->duplicate = TRUE;
    } else if (f->retransmission_of || (p->flags & SMP_FLAG_RETRANSMISSION)) {
        if (f->retransmission_of) {
            it = proto_tree_add_uint(tree, hf_smp_retransmission_of, tvb, 0, 0,
                                     f->retransmission_of);
            proto_item_set_generated(it);
        } else {
            it = ti;
        }
        expert_add_info(pinfo, it, &ei_smp_retransmission);
        col_prepend_fstr(pinfo->cinfo, COL_INFO, "[Retransmission] ");
        tap->retransmission = TRUE;
    }
    if (f->out_of_window) {
        it = proto_tree_add_boolean(tree, hf_smp_out_of_window, tvb, 0, 0, TRUE);
        proto_item_set_generated(it);
        expert_add_info(pinfo, it, &ei_smp_out_of_window);
    }
}

static void
smp_report_verdict(packet_info *pinfo, proto_item *ti, proto_item *vi, int verdict, guint8 version)
{
    switch (verdict) {
    case SMP_V_TOO_SHORT:
        expert_add_info(pinfo, vi, &ei_smp_too_short); break;
    case SMP_V_BAD_VERSION:
        expert_add_info_format(pinfo, vi, &ei_smp_unknown_version,
                               "Unknown version %u: a version-1 receiver drops it", version);
        break;
    case SMP_V_BAD_LENGTH:
        expert_add_info(pinfo, vi, &ei_smp_bad_length); break;
    case SMP_V_CRITICAL_FLAG:
        expert_add_info(pinfo, vi, &ei_smp_critical_flag); break;
    case SMP_V_UNKNOWN_TYPE:
        expert_add_info(pinfo, vi, &ei_smp_unknown_type); break;
    case SMP_V_BODY_TOO_SHORT:
        expert_add_info(pinfo, vi, &ei_smp_truncated); break;
    case SMP_V_TRAILING_BYTES:
        expert_add_info(pinfo, vi, &ei_smp_trailing); break;
    case SMP_V_BAD_FIELD:
        expert_add_info(pinfo, vi, &ei_smp_bad_field); break;
    default:
        break;  /* bad checksum has its own item on the checksum field */
    }
    if (verdict == SMP_V_NOT_JUDGED) {
        /* the Info column has the cut mark already (smp_mark_cut) */
        proto_item_append_text(ti, " [cut short: not judged]");
    } else if (verdict != SMP_V_OK) {
        proto_item_append_text(ti, " [dropped by the receiver: %s]",
                               val_to_str_const(verdict, smp_verdict_vals, "?"));
        col_append_fstr(pinfo->cinfo, COL_INFO, " [%s]",
                        val_to_str_const(verdict, smp_verdict_vals, "?"));
    }
}

/* A packet the capture's snapshot length cut short: marked in the Info column, the tree and
 * the expert info (simplemsg.cut_short). Nothing it holds changes the tracking. */
static void
smp_mark_cut(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, proto_item *ti, guint captured,
             guint size)
{
    proto_item *it = proto_tree_add_boolean(tree, hf_smp_cut_short, tvb, 0, 0, TRUE);
    /* an ICMP error quotes only the start of the packet it is about */
    const gchar *by = pinfo->flags.in_error_pkt ? "the ICMP quote" : "the capture";

    proto_item_set_generated(it);
    proto_item_append_text(it, " (%u of %u bytes captured)", captured, size);
    expert_add_info_format(pinfo, ti, &ei_smp_capture_short,
                           "Packet cut short by %s (%u of %u bytes): not judged, "
                           "not tracked", by, captured, size);
    col_append_fstr(pinfo->cinfo, COL_INFO, " [cut short by %s: %u of %u B]", by,
                    captured, size);
}

/* A header the capture cut short: its fields as far as they were captured. */
static void
smp_dissect_cut_header(tvbuff_t *tvb, packet_info *pinfo, proto_tree *st, proto_item *ti,
                       guint captured, guint size)
{
    static const struct { int *hf; guint8 offset, len; } fields[] = {
        { &hf_smp_version, 0, 1 }, { &hf_smp_type, 1, 1 }, { &hf_smp_flags, 2, 1 },
        { &hf_smp_priority, 3, 1 }, { &hf_smp_checksum, 4, 2 }, { &hf_smp_length, 6, 2 },
        { &hf_smp_dst_endpoint, 8, 2 }, { &hf_smp_src_endpoint, 10, 2 }, { &hf_smp_ack, 12, 4 },
        { &hf_smp_dst_incarnation, 16, 8 }, { &hf_smp_src_incarnation, 24, 8 },
    };
    proto_item *vi;
    guint i;

    if (captured >= 2)
        col_add_str(pinfo->cinfo, COL_INFO,
                    val_to_str(tvb_get_guint8(tvb, 1), smp_type_vals, "type %u"));
    else
        col_set_str(pinfo->cinfo, COL_INFO, "SMP header");
    if (captured >= 12)
        col_append_fstr(pinfo->cinfo, COL_INFO, " %u" UTF8_RIGHTWARDS_ARROW "%u",
                        tvb_get_ntohs(tvb, 10), tvb_get_ntohs(tvb, 8));
    for (i = 0; i < array_length(fields); i++)
        if ((guint)fields[i].offset + fields[i].len <= captured)
            proto_tree_add_item(st, *fields[i].hf, tvb, fields[i].offset, fields[i].len,
                                ENC_BIG_ENDIAN);
    vi = proto_tree_add_uint(st, hf_smp_verdict, tvb, 0, 0, SMP_V_NOT_JUDGED);
    proto_item_set_generated(vi);
    proto_item_append_text(ti, " [cut short: not judged]");
    smp_mark_cut(tvb, pinfo, st, ti, captured, size);
}

/* A packet quoted in an ICMP error is no packet of its own: not counted. */
static void
smp_tap_queue(packet_info *pinfo, smp_tap_info_t *tap)
{
    if (!pinfo->flags.in_error_pkt)
        tap_queue_packet(simplemsg_tap, pinfo, tap);
}

static int
dissect_simplemsg(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, void *data)
{
    static int * const flag_fields[] = {
        &hf_smp_flag_retrans, &hf_smp_flag_ignorable, &hf_smp_flag_critical, &hf_smp_flag_auth,
        NULL
    };
    smp_packet_t p;
    proto_item *ti, *vi;
    proto_tree *st;
    guint size = tvb_reported_length(tvb);
    guint captured = tvb_captured_length(tvb);
    guint full = size;
    gboolean checksum_known = FALSE, checksum_ok = FALSE;
    smp_frame_t *f = NULL;
    guint mac = 0, have = 0;
    gboolean whole, unaddressed;
    gboolean keyed = smp_auth_key_state == SMP_KEY_SET;
    int mac_status = -1;              /* SMP_MAC_*; -1: no AUTH flag (or not version 1) */
    guint8 mac_computed[SMP_MAC_BYTES];
    smp_tap_info_t *tap = wmem_new0(pinfo->pool, smp_tap_info_t);

    col_set_str(pinfo->cinfo, COL_PROTOCOL, "SIMPLEMSG");
    col_clear(pinfo->cinfo, COL_INFO);
    ti = proto_tree_add_item(tree, proto_simplemsg, tvb, 0, -1, ENC_NA);
    st = proto_item_add_subtree(ti, ett_simplemsg);

    memset(&p, 0, sizeof(p));
    p.ipv4 = TRUE;
    p.src_addr = smp_ipv4_of(&pinfo->src, &p.ipv4);
    p.dst_addr = smp_ipv4_of(&pinfo->dst, &p.ipv4);
    /* The IPv4 dissector hands its header over (ws_ip4); IPv6 hands something else. */
    if (p.ipv4 && data != NULL && ((const ws_ip4 *)data)->ip_ver == 4)
        p.ip_id = 0x10000u + ((const ws_ip4 *)data)->ip_id;
    /* The packet's size: what IP says, except in an ICMP error, whose quote of the packet IP
     * reports as all there is; then the SMP header's length says it (when it is larger). */
    if (pinfo->flags.in_error_pkt && captured >= 8 && tvb_get_ntohs(tvb, 6) > size)
        full = tvb_get_ntohs(tvb, 6);

    if (full < SMP_HEADER_BYTES) {
        col_set_str(pinfo->cinfo, COL_INFO, "Too short for an SMP header");
        if (captured > 0)
            proto_tree_add_item(st, hf_smp_payload, tvb, 0, -1, ENC_NA);
        vi = proto_tree_add_uint(st, hf_smp_verdict, tvb, 0, 0, SMP_V_TOO_SHORT);
        proto_item_set_generated(vi);
        expert_add_info(pinfo, vi, &ei_smp_too_short);
        if (captured < full)
            smp_mark_cut(tvb, pinfo, st, ti, captured, full);
        tap->verdict = SMP_V_TOO_SHORT;
        smp_tap_queue(pinfo, tap);
        return captured;
    }
    if (captured < SMP_HEADER_BYTES) {
        /* the packet has a header, the capture only part of it */
        smp_dissect_cut_header(tvb, pinfo, st, ti, captured, full);
        tap->verdict = SMP_V_NOT_JUDGED;
        tap->has_type = captured >= 2;
        tap->type = captured >= 2 ? tvb_get_guint8(tvb, 1) : 0;
        smp_tap_queue(pinfo, tap);
        return captured;
    }

    p.version = tvb_get_guint8(tvb, 0);
    p.type = tvb_get_guint8(tvb, 1);
    p.flags = tvb_get_guint8(tvb, 2);
    p.priority = tvb_get_guint8(tvb, 3);
    p.checksum = tvb_get_ntohs(tvb, 4);
    p.length = tvb_get_ntohs(tvb, 6);
    p.dst_ep = tvb_get_ntohs(tvb, 8);
    p.src_ep = tvb_get_ntohs(tvb, 10);
    p.ack = tvb_get_ntohl(tvb, 12);
    p.dst_inc = tvb_get_ntoh64(tvb, 16);
    p.src_inc = tvb_get_ntoh64(tvb, 24);

    col_add_fstr(pinfo->cinfo, COL_INFO, "%-10s %u" UTF8_RIGHTWARDS_ARROW "%u",
                 val_to_str(p.type, smp_type_vals, "type %u"), p.src_ep, p.dst_ep);
    proto_item_append_text(ti, ", %s, endpoint %u" UTF8_RIGHTWARDS_ARROW "%u",
                           val_to_str(p.type, smp_type_vals, "unknown type %u"), p.src_ep, p.dst_ep);

    proto_tree_add_item(st, hf_smp_version, tvb, 0, 1, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_type, tvb, 1, 1, ENC_BIG_ENDIAN);
    proto_tree_add_bitmask(st, tvb, 2, hf_smp_flags, ett_smp_flags, flag_fields, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_priority, tvb, 3, 1, ENC_BIG_ENDIAN);

    /* The checksum can be judged only over the whole packet, when its length is right and the
     * addresses are IPv4 ones (the pseudo-header has them). */
    whole = captured >= size && p.length == size && p.ipv4;
    if (smp_check_checksum && whole && p.version == SMP_VERSION) {
        guint16 computed = smp_compute_checksum(tvb, &p, size);
        checksum_known = TRUE;
        checksum_ok = computed == p.checksum;
        proto_tree_add_checksum(st, tvb, 4, hf_smp_checksum, hf_smp_checksum_status,
                                &ei_smp_bad_checksum, pinfo, computed, ENC_BIG_ENDIAN,
                                PROTO_CHECKSUM_VERIFY);
    } else {
        proto_tree_add_checksum(st, tvb, 4, hf_smp_checksum, hf_smp_checksum_status,
                                &ei_smp_bad_checksum, pinfo, 0, ENC_BIG_ENDIAN,
                                PROTO_CHECKSUM_NO_FLAGS);
    }
    proto_tree_add_item(st, hf_smp_length, tvb, 6, 2, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_dst_endpoint, tvb, 8, 2, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_src_endpoint, tvb, 10, 2, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_ack, tvb, 12, 4, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_dst_incarnation, tvb, 16, 8, ENC_BIG_ENDIAN);
    proto_tree_add_item(st, hf_smp_src_incarnation, tvb, 24, 8, ENC_BIG_ENDIAN);

    if (full > size && p.version == SMP_VERSION)
        p.verdict = SMP_V_NOT_JUDGED;  /* quoted in an ICMP error: only its start is here */
    else
        p.verdict = smp_verdict(tvb, &p, checksum_ok, checksum_known);
    /* The MAC (SPEC 3.4), judged over the whole packet whatever the verdict so far. With a key,
     * a packet the decode accepts is dropped unless its MAC is right (the engine checks it right
     * after the decode: dropped_auth); without one an AUTH packet is shown, not tracked. */
    if (p.version == SMP_VERSION && (p.flags & SMP_FLAG_AUTH)) {
        if (!keyed)
            mac_status = SMP_MAC_UNVERIFIED;
        else if (whole && full == size && size >= SMP_HEADER_BYTES + SMP_MAC_BYTES &&
                 smp_compute_mac(tvb, &p, size, mac_computed))
            mac_status = tvb_memeql(tvb, size - SMP_MAC_BYTES, mac_computed, SMP_MAC_BYTES) == 0 ?
                         SMP_MAC_GOOD : SMP_MAC_BAD;
        else
            mac_status = SMP_MAC_NOT_CHECKED;
    }
    if (keyed && p.verdict == SMP_V_OK && p.version == SMP_VERSION &&
        (!(p.flags & SMP_FLAG_AUTH) || mac_status == SMP_MAC_BAD))
        p.verdict = SMP_V_DROPPED_AUTH;
    tap->has_type = TRUE;
    tap->type = p.type;
    tap->verdict = p.verdict;
    vi = proto_tree_add_uint(st, hf_smp_verdict, tvb, 0, 0, (guint32)p.verdict);
    proto_item_set_generated(vi);
    if (!checksum_known)
        proto_item_append_text(vi, " (checksum not verified)");

    if (p.version != SMP_VERSION) {
        /* Nothing after the version is defined for another version: show the bytes only. */
        smp_report_verdict(pinfo, ti, vi, p.verdict, p.version);
        if (captured > SMP_HEADER_BYTES)
            proto_tree_add_item(st, hf_smp_payload, tvb, SMP_HEADER_BYTES, -1, ENC_NA);
        if (captured < full)
            smp_mark_cut(tvb, pinfo, st, ti, captured, full);
        smp_tap_queue(pinfo, tap);
        return captured;
    }

    mac = (p.flags & SMP_FLAG_AUTH) ? SMP_MAC_BYTES : 0;
    if (captured >= SMP_HEADER_BYTES + mac)
        have = captured - SMP_HEADER_BYTES - mac;
    if (p.length <= size && p.length >= SMP_HEADER_BYTES + mac)
        have = MIN(have, (guint)p.length - SMP_HEADER_BYTES - mac);
    /* Cut short by the capture: the body was not read by the checks; read what is there. */
    if (captured < full && full >= SMP_HEADER_BYTES + mac) {
        guint whole = full - SMP_HEADER_BYTES - mac;
        if (p.length >= SMP_HEADER_BYTES + mac && p.length < full)
            whole = (guint)p.length - SMP_HEADER_BYTES - mac;
        smp_read_cut(tvb, have, whole, &p);
    }

    /* Only HELLO, PROBE and NAME_QUERY may come before the sender knows the receiver (SPEC
     * 5.5): the engine drops any other packet naming destination incarnation 0. */
    unaddressed = p.verdict == SMP_V_OK && p.dst_inc == 0 && p.type != SMP_HELLO &&
                  p.type != SMP_PROBE && p.type != SMP_NAME_QUERY;
    if (unaddressed)
        expert_add_info(pinfo, ti, &ei_smp_no_dst_incarnation);

    /* Only packets the engine would accept change the tracking state, as at a real receiver;
     * the state is written in the first pass only. */
    if (!PINFO_FD_VISITED(pinfo)) {
        /* An AUTH packet only with its MAC checked and right: without a key (or one that
         * cannot be checked here) a receiver drops it (SPEC 3.4). */
        if (p.verdict == SMP_V_OK && !unaddressed &&
            (!(p.flags & SMP_FLAG_AUTH) || mac_status == SMP_MAC_GOOD) && whole &&
            !pinfo->flags.in_error_pkt) {
            f = smp_track(tvb, pinfo, &p);
            p_add_proto_data(wmem_file_scope(), pinfo, proto_simplemsg, 0, f);
        }
    } else {
        f = (smp_frame_t *)p_get_proto_data(wmem_file_scope(), pinfo, proto_simplemsg, 0);
    }

    if (p.type >= 1 && p.type <= SMP_TYPE_MAX && p.verdict != SMP_V_UNKNOWN_TYPE &&
        p.verdict != SMP_V_BODY_TOO_SHORT) {
        proto_tree *bt = proto_tree_add_subtree_format(st, tvb, SMP_HEADER_BYTES, have,
                                                       ett_smp_body, NULL, "%s",
                                                       val_to_str_const(p.type, smp_type_vals, "Body"));
        /* The body is read as far as it is there; a short one stops at its end. */
        if (p.verdict == SMP_V_BAD_FIELD || p.verdict == SMP_V_TRAILING_BYTES ||
            p.verdict == SMP_V_OK || p.verdict == SMP_V_BAD_CHECKSUM ||
            p.verdict == SMP_V_CRITICAL_FLAG || p.verdict == SMP_V_BAD_LENGTH ||
            p.verdict == SMP_V_NOT_JUDGED || p.verdict == SMP_V_DROPPED_AUTH)
            smp_dissect_body(tvb, pinfo, bt, &p, have, f);
    } else if (have > 0) {
        proto_tree_add_item(st, hf_smp_payload, tvb, SMP_HEADER_BYTES, have, ENC_NA);
    }
    if (p.ack != 0)
        col_append_fstr(pinfo->cinfo, COL_INFO, " ack=%u", p.ack);
    if (mac_status >= 0) {
        proto_item *si;
        gboolean there = captured >= SMP_HEADER_BYTES + mac && p.length <= captured &&
                         p.length >= SMP_HEADER_BYTES + mac;
        if (there)
            proto_tree_add_item(st, hf_smp_mac, tvb, p.length - mac, mac, ENC_NA);
        si = proto_tree_add_uint(st, hf_smp_mac_status, tvb, there ? p.length - mac : 0,
                                 there ? mac : 0, (guint32)mac_status);
        proto_item_set_generated(si);
        switch (mac_status) {
        case SMP_MAC_BAD: {
            proto_item *ci = proto_tree_add_bytes_with_length(st, hf_smp_mac_computed, tvb, 0, 0,
                                                               mac_computed, SMP_MAC_BYTES);
            proto_item_set_generated(ci);
            expert_add_info(pinfo, si, &ei_smp_mac_bad);
            break;
        }
        case SMP_MAC_UNVERIFIED:
            if (smp_auth_key_state == SMP_KEY_INVALID)
                expert_add_info_format(pinfo, si, &ei_smp_auth, "MAC not verified: the key "
                                       "(simplemsg.auth_key) is not 64 hex digits");
            else
                expert_add_info(pinfo, si, &ei_smp_auth);
            break;
        case SMP_MAC_NOT_CHECKED:
            expert_add_info_format(pinfo, si, &ei_smp_auth, "MAC not checked: the packet is not "
                                   "all there (cut short, wrong length, or not IPv4)");
            break;
        default:
            break;
        }
    } else if (p.verdict == SMP_V_DROPPED_AUTH) {
        expert_add_info(pinfo, vi, &ei_smp_mac_missing);
    }
    if (f)
        smp_add_tracking(tvb, pinfo, st, ti, &p, f, tap);
    smp_report_verdict(pinfo, ti, vi, p.verdict, p.version);
    if (captured < full)
        smp_mark_cut(tvb, pinfo, st, ti, captured, full);
    smp_tap_queue(pinfo, tap);
    return captured;
}

/* ---- Statistics: -z simplemsg,tree (Statistics > SIMPLEMSG in the GUI) -------------------- */
static const gchar *st_str_packets = "SMP packets";
static const gchar *st_str_types = "Packets by type";
static const gchar *st_str_retrans = "Retransmissions";
static const gchar *st_str_dups = "Duplicates (network copies)";
static const gchar *st_str_drops = "Dropped by the receiver, by verdict";
static const gchar *st_str_not_judged = "Not judged (cut short by the capture)";
static const gchar *st_str_times = "Response time (us), by service or channel";
static int st_node_packets = -1;
static int st_node_types = -1;
static int st_node_drops = -1;
static int st_node_times = -1;

static void
smp_stats_tree_init(stats_tree *st)
{
    st_node_packets = stats_tree_create_node(st, st_str_packets, 0, STAT_DT_INT, TRUE);
    st_node_types = stats_tree_create_node(st, st_str_types, 0, STAT_DT_INT, TRUE);
    stats_tree_create_node(st, st_str_retrans, 0, STAT_DT_INT, FALSE);
    stats_tree_create_node(st, st_str_dups, 0, STAT_DT_INT, FALSE);
    st_node_drops = stats_tree_create_node(st, st_str_drops, 0, STAT_DT_INT, TRUE);
    stats_tree_create_node(st, st_str_not_judged, 0, STAT_DT_INT, FALSE);
    st_node_times = stats_tree_create_node(st, st_str_times, 0, STAT_DT_INT, TRUE);
}

static tap_packet_status
smp_stats_tree_packet(stats_tree *st, packet_info *pinfo, epan_dissect_t *edt, const void *p,
                      tap_flags_t flags)
{
    const smp_tap_info_t *t = (const smp_tap_info_t *)p;
    const gchar *name;

    tick_stat_node(st, st_str_packets, 0, FALSE);
    tick_stat_node(st, st_str_types, 0, TRUE);
    if (t->has_type)
        name = val_to_str(t->type, smp_type_vals, "type %u");
    else
        name = "(no header)";
    tick_stat_node(st, name, st_node_types, FALSE);
    if (t->retransmission)
        tick_stat_node(st, st_str_retrans, 0, FALSE);
    if (t->duplicate)
        tick_stat_node(st, st_str_dups, 0, FALSE);
    if (t->verdict == SMP_V_NOT_JUDGED) {
        tick_stat_node(st, st_str_not_judged, 0, FALSE);
    } else if (t->verdict != SMP_V_OK) {
        tick_stat_node(st, st_str_drops, 0, TRUE);
        tick_stat_node(st, val_to_str_const(t->verdict, smp_verdict_vals, "?"), st_node_drops, FALSE);
    }
    if (t->has_time) {
        if (t->exchange_type != SMP_REQUEST)
            name = val_to_str(t->exchange_type, smp_type_vals, "type %u");
        else if (t->service)
            name = wmem_strdup_printf(pinfo->pool, "service %s",
                                      format_text(pinfo->pool, (const guchar *)t->service,
                                                  strlen(t->service)));
        else if (t->has_channel)
            name = wmem_strdup_printf(pinfo->pool, "channel %u", t->channel);
        else
            name = "channel unknown";
        avg_stat_node_add_value_int(st, st_str_times, 0, TRUE, t->time_us);
        avg_stat_node_add_value_int(st, name, st_node_times, FALSE, t->time_us);
    }
    return TAP_PACKET_REDRAW;
}

void
register_simplemsg_stats_tree(void)
{
    stats_tree_register_plugin("simplemsg", "simplemsg", "SIMPLEMSG/Packets and response times",
                               0, smp_stats_tree_packet, smp_stats_tree_init, NULL);
}

void
proto_register_simplemsg(void)
{
    static hf_register_info hf[] = {
        /* Header */
        { &hf_smp_version, { "Version", "simplemsg.version", FT_UINT8, BASE_DEC, NULL, 0x0,
            "Protocol version (1)", HFILL }},
        { &hf_smp_type, { "Type", "simplemsg.type", FT_UINT8, BASE_DEC, VALS(smp_type_vals), 0x0,
            NULL, HFILL }},
        { &hf_smp_flags, { "Flags", "simplemsg.flags", FT_UINT8, BASE_HEX, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_flag_retrans, { "Retransmission", "simplemsg.flags.retransmission", FT_BOOLEAN, 8,
            NULL, SMP_FLAG_RETRANSMISSION, "The packet repeats an earlier one", HFILL }},
        { &hf_smp_flag_ignorable, { "Reserved (ignorable)", "simplemsg.flags.ignorable", FT_UINT8,
            BASE_HEX, NULL, SMP_FLAGS_IGNORABLE, "Sent as 0, ignored on receipt", HFILL }},
        { &hf_smp_flag_critical, { "Reserved (critical)", "simplemsg.flags.critical", FT_UINT8,
            BASE_HEX, NULL, SMP_FLAGS_CRITICAL, "Sent as 0; a receiver drops a packet with one set",
            HFILL }},
        { &hf_smp_flag_auth, { "Authenticated", "simplemsg.flags.auth", FT_BOOLEAN, 8, NULL,
            SMP_FLAG_AUTH, "A 16-byte keyed MAC ends the packet", HFILL }},
        { &hf_smp_priority, { "Priority", "simplemsg.priority", FT_UINT8, BASE_DEC, NULL, 0x0,
            "The sending thread's priority, 0 (lowest) to 255", HFILL }},
        { &hf_smp_checksum, { "Checksum", "simplemsg.checksum", FT_UINT16, BASE_HEX, NULL, 0x0,
            "Ones' complement over the pseudo-header and the packet", HFILL }},
        { &hf_smp_checksum_status, { "Checksum status", "simplemsg.checksum.status", FT_UINT8,
            BASE_NONE, VALS(proto_checksum_vals), 0x0, NULL, HFILL }},
        { &hf_smp_length, { "Length", "simplemsg.length", FT_UINT16, BASE_DEC|BASE_UNIT_STRING,
            &units_byte_bytes, 0x0, "Bytes of the whole SMP packet", HFILL }},
        { &hf_smp_dst_endpoint, { "Destination endpoint", "simplemsg.dst_endpoint", FT_UINT16,
            BASE_DEC, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_src_endpoint, { "Source endpoint", "simplemsg.src_endpoint", FT_UINT16,
            BASE_DEC, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_ack, { "Acknowledged reply of txn", "simplemsg.ack", FT_UINT32, BASE_DEC, NULL,
            0x0, "The sender has the whole reply of its own transaction with this number (0: none)",
            HFILL }},
        { &hf_smp_dst_incarnation, { "Destination incarnation", "simplemsg.dst_incarnation",
            FT_UINT64, BASE_HEX, NULL, 0x0, "0: not known yet", HFILL }},
        { &hf_smp_src_incarnation, { "Source incarnation", "simplemsg.src_incarnation", FT_UINT64,
            BASE_HEX, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_verdict, { "Receiver's verdict", "simplemsg.verdict", FT_UINT8, BASE_DEC,
            VALS(smp_verdict_vals), 0x0,
            "What a version-1 receiver does with this packet: ok, or why it drops it "
            "(dropped-auth: no right MAC for the key given; not-judged: cut short by the "
            "capture or an ICMP quote)", HFILL }},
        { &hf_smp_cut_short, { "Cut short", "simplemsg.cut_short", FT_BOOLEAN, BASE_NONE, NULL,
            0x0, "The capture's snapshot length (or an ICMP error's quote) cut this packet: its "
            "checksum and body are not checked, and it is not tracked", HFILL }},

        /* HELLO / HELLO_ACK */
        { &hf_smp_window_bytes, { "Window", "simplemsg.window_bytes", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0,
            "Eager bytes the receiver of this packet may have outstanding at the sender", HFILL }},
        { &hf_smp_window_txns, { "Window transactions", "simplemsg.window_txns", FT_UINT16,
            BASE_DEC, NULL, 0x0, "Transactions the receiver of this packet may have outstanding",
            HFILL }},
        { &hf_smp_mtu, { "MTU", "simplemsg.mtu", FT_UINT16, BASE_DEC|BASE_UNIT_STRING,
            &units_byte_bytes, 0x0, "Largest IP packet the sender can receive", HFILL }},
        { &hf_smp_message_bytes_max, { "Largest message", "simplemsg.message_bytes_max", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_nonce, { "Nonce", "simplemsg.nonce", FT_UINT32, BASE_HEX_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_eager_bytes_max, { "Largest eager part", "simplemsg.eager_bytes_max", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0,
            "Most eager bytes of one request the sender keeps; the rest is pulled", HFILL }},

        /* Transactions */
        { &hf_smp_txn, { "Transaction", "simplemsg.txn", FT_UINT32, BASE_DEC, NULL, 0x0,
            "The client's transaction number", HFILL }},
        { &hf_smp_txn_low, { "Lowest open transaction", "simplemsg.txn_low", FT_UINT32, BASE_DEC,
            NULL, 0x0, "Every transaction below this one is finished at the client", HFILL }},
        { &hf_smp_txn_next, { "Next transaction", "simplemsg.txn_next", FT_UINT32, BASE_DEC,
            NULL, 0x0, "CHALLENGE_ACK: the number the client gives its next transaction", HFILL }},
        { &hf_smp_open_txns, { "Transactions waited on", "simplemsg.open_txns", FT_UINT64, BASE_HEX,
            NULL, 0x0, "CHALLENGE_ACK: bit i set: the transaction i steps after the lowest open "
            "one is sent and not yet acknowledged; the server takes the others below the next "
            "transaction as finished", HFILL }},
        { &hf_smp_channel, { "Channel", "simplemsg.channel", FT_UINT32, BASE_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_total_bytes, { "Message size", "simplemsg.total_bytes", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, "Size of the whole message", HFILL }},
        { &hf_smp_eager_bytes, { "Eager bytes", "simplemsg.eager_bytes", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0,
            "Bytes [0, eager) travel unasked; the rest is pulled", HFILL }},
        { &hf_smp_offset, { "Offset", "simplemsg.offset", FT_UINT32, BASE_DEC|BASE_UNIT_STRING,
            &units_byte_bytes, 0x0, "Offset of this packet's payload in the message", HFILL }},
        { &hf_smp_reply_bytes_max, { "Reply buffer", "simplemsg.reply_bytes_max", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, "Size of the client's reply buffer",
            HFILL }},
        { &hf_smp_deadline, { "Deadline", "simplemsg.deadline_us", FT_UINT32, BASE_CUSTOM,
            CF_FUNC(smp_fmt_deadline), 0x0,
            "Time remaining until the client gives up, when sent (microseconds)", HFILL }},
        { &hf_smp_error, { "Error", "simplemsg.error", FT_UINT16, BASE_DEC, VALS(smp_error_vals),
            0x0, NULL, HFILL }},
        { &hf_smp_reserved, { "Reserved", "simplemsg.reserved", FT_UINT32, BASE_HEX, NULL, 0x0,
            "Sent as zero, ignored", HFILL }},
        { &hf_smp_status, { "Status", "simplemsg.status", FT_UINT32, BASE_DEC, NULL, 0x0,
            "The server's reply status, or its error code with app-error", HFILL }},
        { &hf_smp_what, { "Bytes of", "simplemsg.what", FT_UINT8, BASE_DEC, VALS(smp_what_vals),
            0x0, NULL, HFILL }},
        { &hf_smp_range_count, { "Ranges", "simplemsg.ranges", FT_UINT8, BASE_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_range, { "Range", "simplemsg.range", FT_NONE, BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_range_offset, { "Offset", "simplemsg.range.offset", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_range_bytes, { "Size", "simplemsg.range.bytes", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_ack_count, { "Entries", "simplemsg.ack_entries", FT_UINT16, BASE_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_ack_entry, { "Entry", "simplemsg.ack_entry", FT_NONE, BASE_NONE, NULL, 0x0, NULL,
            HFILL }},
        { &hf_smp_ack_txn, { "Transaction", "simplemsg.ack_entry.txn", FT_UINT32, BASE_DEC, NULL,
            0x0, "Number given by the endpoint that started the transaction", HFILL }},
        { &hf_smp_ack_kind, { "Kind", "simplemsg.ack_entry.kind", FT_UINT8, BASE_DEC,
            VALS(smp_ack_kind_vals), 0x0, NULL, HFILL }},
        { &hf_smp_cancel_reason, { "Reason", "simplemsg.cancel_reason", FT_UINT16, BASE_DEC,
            VALS(smp_error_vals), 0x0, NULL, HFILL }},
        { &hf_smp_pulse_code, { "Code", "simplemsg.pulse_code", FT_INT8, BASE_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_pulse_value, { "Value", "simplemsg.pulse_value", FT_UINT32, BASE_HEX_DEC, NULL,
            0x0, NULL, HFILL }},
        { &hf_smp_pulse_source, { "Source connection", "simplemsg.pulse_source", FT_UINT16,
            BASE_DEC, NULL, 0x0, "The sender's connection (0: none given)", HFILL }},
        { &hf_smp_probe_seq, { "Sequence", "simplemsg.probe_seq", FT_UINT32, BASE_DEC, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_probe_bytes, { "Probe size", "simplemsg.probe_bytes", FT_UINT16,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0,
            "IP packet size the PROBE was padded to", HFILL }},
        { &hf_smp_padding, { "Padding", "simplemsg.padding", FT_BYTES, BASE_NONE, NULL, 0x0, NULL,
            HFILL }},
        { &hf_smp_named_incarnation, { "Named incarnation", "simplemsg.named_incarnation",
            FT_UINT64, BASE_HEX, NULL, 0x0, "The incarnation the offending packet named", HFILL }},
        { &hf_smp_reset_reason, { "Reason", "simplemsg.reset_reason", FT_UINT16, BASE_DEC,
            VALS(smp_reset_reason_vals), 0x0, NULL, HFILL }},
        { &hf_smp_query, { "Query", "simplemsg.query", FT_UINT32, BASE_DEC, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_name_bytes, { "Name length", "simplemsg.name_bytes", FT_UINT8,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_name, { "Service", "simplemsg.service", FT_STRING, BASE_NONE, NULL, 0x0, NULL,
            HFILL }},
        { &hf_smp_payload, { "Payload", "simplemsg.payload", FT_BYTES, BASE_NONE, NULL, 0x0, NULL,
            HFILL }},
        { &hf_smp_payload_bytes, { "Payload size", "simplemsg.payload_bytes", FT_UINT32,
            BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_mac, { "MAC", "simplemsg.mac", FT_BYTES, BASE_NONE, NULL, 0x0,
            "Keyed message authentication code: BLAKE2s-128 with the cluster key", HFILL }},
        { &hf_smp_mac_status, { "MAC status", "simplemsg.mac.status", FT_UINT8, BASE_DEC,
            VALS(smp_mac_status_vals), 0x0,
            "good or bad with the key of simplemsg.auth_key; unverified without one", HFILL }},
        { &hf_smp_mac_computed, { "MAC computed", "simplemsg.mac.computed", FT_BYTES, BASE_NONE,
            NULL, 0x0, "The right MAC for this packet with the given key", HFILL }},
        { &hf_smp_message, { "Message", "simplemsg.message", FT_BYTES, BASE_NONE, NULL, 0x0,
            "The whole request or reply", HFILL }},

        /* Tracking */
        { &hf_smp_stream, { "Stream index", "simplemsg.stream", FT_UINT32, BASE_DEC, NULL, 0x0,
            "The exchange (transaction, probe, HELLO or name query) this packet belongs to or "
            "acknowledges, numbered from 0 in order of first appearance", HFILL }},
        { &hf_smp_request_in, { "Request in", "simplemsg.request_in", FT_FRAMENUM, BASE_NONE,
            FRAMENUM_TYPE(FT_FRAMENUM_REQUEST), 0x0, "The request of this exchange is in this frame",
            HFILL }},
        { &hf_smp_previous_life_in, { "Previous incarnation last seen in", "simplemsg.previous_life_in",
            FT_FRAMENUM, BASE_NONE, NULL, 0x0,
            "The sender rebooted: its earlier incarnation's last packet is in this frame", HFILL }},
        { &hf_smp_response_in, { "Response in", "simplemsg.response_in", FT_FRAMENUM, BASE_NONE,
            FRAMENUM_TYPE(FT_FRAMENUM_RESPONSE), 0x0, "The answer to this exchange is in this frame",
            HFILL }},
        { &hf_smp_response_time, { "Response time", "simplemsg.time", FT_RELATIVE_TIME, BASE_NONE,
            NULL, 0x0, "Time from the request to this answer", HFILL }},
        { &hf_smp_retransmission_of, { "Retransmission of", "simplemsg.retransmission_of",
            FT_FRAMENUM, BASE_NONE, FRAMENUM_TYPE(FT_FRAMENUM_RETRANS_PREV), 0x0,
            "The first frame that carried this part", HFILL }},
        { &hf_smp_duplicate_of, { "Duplicate of", "simplemsg.duplicate_of", FT_FRAMENUM, BASE_NONE,
            FRAMENUM_TYPE(FT_FRAMENUM_DUP_ACK), 0x0, "An identical packet is in this frame", HFILL }},
        { &hf_smp_acked_frame, { "Acknowledges frame", "simplemsg.acked_frame", FT_FRAMENUM,
            BASE_NONE, FRAMENUM_TYPE(FT_FRAMENUM_ACK), 0x0,
            "The packet this acknowledgement is about", HFILL }},
        { &hf_smp_reply_acked_in, { "Reply acknowledged in", "simplemsg.reply_acked_in",
            FT_FRAMENUM, BASE_NONE, FRAMENUM_TYPE(FT_FRAMENUM_ACK), 0x0, NULL, HFILL }},
        { &hf_smp_pull_in, { "Pulled in", "simplemsg.pull_in", FT_FRAMENUM, BASE_NONE,
            FRAMENUM_TYPE(FT_FRAMENUM_REQUEST), 0x0, "The PULL this DATA answers is in this frame",
            HFILL }},
        { &hf_smp_data_in, { "Data in", "simplemsg.data_in", FT_FRAMENUM, BASE_NONE,
            FRAMENUM_TYPE(FT_FRAMENUM_RESPONSE), 0x0, "A DATA answering this PULL is in this frame",
            HFILL }},
        { &hf_smp_out_of_window, { "Out of window", "simplemsg.out_of_window", FT_BOOLEAN,
            BASE_NONE, NULL, 0x0, "Transaction outside the window the server granted", HFILL }},

        /* Reassembly */
        { &hf_smp_fragments, { "Message parts", "simplemsg.parts", FT_NONE, BASE_NONE, NULL, 0x0,
            NULL, HFILL }},
        { &hf_smp_fragment, { "Part", "simplemsg.part", FT_FRAMENUM, BASE_NONE, NULL, 0x0, NULL,
            HFILL }},
        { &hf_smp_fragment_overlap, { "Part overlap", "simplemsg.part.overlap", FT_BOOLEAN,
            BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_fragment_overlap_conflicts, { "Conflicting data in part overlap",
            "simplemsg.part.overlap.conflicts", FT_BOOLEAN, BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_fragment_multiple_tails, { "Message has multiple tails",
            "simplemsg.part.multiple_tails", FT_BOOLEAN, BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_fragment_too_long_fragment, { "Part too long", "simplemsg.part.too_long",
            FT_BOOLEAN, BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_fragment_error, { "Reassembly error", "simplemsg.part.error", FT_FRAMENUM,
            BASE_NONE, NULL, 0x0, NULL, HFILL }},
        { &hf_smp_fragment_count, { "Part count", "simplemsg.part.count", FT_UINT32, BASE_DEC,
            NULL, 0x0, NULL, HFILL }},
        { &hf_smp_reassembled_in, { "Reassembled in", "simplemsg.reassembled_in", FT_FRAMENUM,
            BASE_NONE, NULL, 0x0, "The whole message is shown in this frame", HFILL }},
        { &hf_smp_reassembled_length, { "Reassembled length", "simplemsg.reassembled.length",
            FT_UINT32, BASE_DEC|BASE_UNIT_STRING, &units_byte_bytes, 0x0, NULL, HFILL }},
        { &hf_smp_reassembled_data, { "Reassembled data", "simplemsg.reassembled.data", FT_BYTES,
            BASE_NONE, NULL, 0x0, NULL, HFILL }},
    };

    static gint *ett[] = {
        &ett_simplemsg,
        &ett_smp_flags,
        &ett_smp_body,
        &ett_smp_range,
        &ett_smp_ack_entry,
        &ett_smp_fragment,
        &ett_smp_fragments,
    };

    static ei_register_info ei[] = {
        { &ei_smp_bad_checksum, { "simplemsg.checksum.bad", PI_CHECKSUM, PI_ERROR,
            "Bad checksum: the receiver drops this packet", EXPFILL }},
        { &ei_smp_too_short, { "simplemsg.too_short", PI_MALFORMED, PI_ERROR,
            "Shorter than the 32-byte header", EXPFILL }},
        { &ei_smp_unknown_version, { "simplemsg.version.unknown", PI_PROTOCOL, PI_WARN,
            "Unknown version", EXPFILL }},
        { &ei_smp_bad_length, { "simplemsg.length.bad", PI_MALFORMED, PI_ERROR,
            "Length field differs from the IP payload length", EXPFILL }},
        { &ei_smp_critical_flag, { "simplemsg.flags.critical.set", PI_PROTOCOL, PI_WARN,
            "Unknown critical flag set: the receiver drops this packet", EXPFILL }},
        { &ei_smp_unknown_type, { "simplemsg.type.unknown", PI_PROTOCOL, PI_WARN,
            "Unknown message type: the receiver drops this packet", EXPFILL }},
        { &ei_smp_truncated, { "simplemsg.truncated", PI_MALFORMED, PI_ERROR,
            "Body shorter than its type requires (truncated)", EXPFILL }},
        { &ei_smp_trailing, { "simplemsg.trailing", PI_MALFORMED, PI_ERROR,
            "Extra bytes after a body of fixed size", EXPFILL }},
        { &ei_smp_bad_field, { "simplemsg.bad_field", PI_MALFORMED, PI_ERROR,
            "A field has an impossible value (zero transaction, offset past the size, ...)",
            EXPFILL }},
        { &ei_smp_retransmission, { "simplemsg.retransmission", PI_SEQUENCE, PI_NOTE,
            "Retransmission", EXPFILL }},
        { &ei_smp_duplicate, { "simplemsg.duplicate", PI_SEQUENCE, PI_NOTE,
            "Duplicate packet", EXPFILL }},
        { &ei_smp_out_of_window, { "simplemsg.out_of_window.expert", PI_SEQUENCE, PI_WARN,
            "Transaction outside the server's window", EXPFILL }},
        { &ei_smp_error_reply, { "simplemsg.error.reply", PI_RESPONSE_CODE, PI_NOTE,
            "Transaction failed", EXPFILL }},
        { &ei_smp_reset, { "simplemsg.reset", PI_SEQUENCE, PI_WARN,
            "Peer does not know the named incarnation (rebooted or never met)", EXPFILL }},
        { &ei_smp_refused, { "simplemsg.refused", PI_SEQUENCE, PI_NOTE,
            "Peer table full: the sender is alive and will take this peer later", EXPFILL }},
        { &ei_smp_auth, { "simplemsg.mac.unverified", PI_UNDECODED, PI_NOTE,
            "MAC not verified: no key given (preference simplemsg.auth_key); not tracked",
            EXPFILL }},
        { &ei_smp_mac_bad, { "simplemsg.mac.bad", PI_SECURITY, PI_WARN,
            "Bad MAC: forged, altered or another key; a keyed receiver drops this packet",
            EXPFILL }},
        { &ei_smp_mac_missing, { "simplemsg.mac.missing", PI_SECURITY, PI_WARN,
            "No MAC (AUTH flag clear) while a key is given: a keyed receiver drops this packet",
            EXPFILL }},
        { &ei_smp_capture_short, { "simplemsg.capture_short", PI_UNDECODED, PI_NOTE,
            "Packet cut short by the capture (snapshot length): not judged", EXPFILL }},
        { &ei_smp_rebooted, { "simplemsg.rebooted", PI_SEQUENCE, PI_NOTE,
            "Sender rebooted (a new incarnation)", EXPFILL }},
        { &ei_smp_no_dst_incarnation, { "simplemsg.no_dst_incarnation", PI_PROTOCOL, PI_WARN,
            "Destination incarnation 0: only HELLO, PROBE and NAME_QUERY may not know the "
            "receiver, which drops this packet", EXPFILL }},
    };

    module_t *smp_module;
    expert_module_t *expert_smp;

    proto_simplemsg = proto_register_protocol("Simple Message Protocol (simplemsg)",
                                              "SIMPLEMSG", "simplemsg");
    proto_register_field_array(proto_simplemsg, hf, array_length(hf));
    proto_register_subtree_array(ett, array_length(ett));
    expert_smp = expert_register_protocol(proto_simplemsg);
    expert_register_field_array(expert_smp, ei, array_length(ei));

    smp_module = prefs_register_protocol(proto_simplemsg, smp_apply_prefs);
    prefs_register_bool_preference(smp_module, "check_checksum", "Validate the checksum",
        "Verify the checksum over the pseudo-header; packets that fail it are not tracked",
        &smp_check_checksum);
    prefs_register_bool_preference(smp_module, "reassemble", "Reassemble messages",
        "Put segmented and pulled messages together and show the whole", &smp_reassemble);
    prefs_register_string_preference(smp_module, "auth_key", "Cluster key (64 hex digits)",
        "The 32-byte key of SPEC 3.4, as 64 hex digits; empty: none. With it, each AUTH packet's "
        "MAC is verified and only packets with a right MAC are tracked (a keyed receiver drops "
        "the rest); without it, AUTH packets are shown but not tracked",
        &smp_auth_key_pref);

    reassembly_table_register(&smp_reassembly_table, &addresses_reassembly_table_functions);
    register_init_routine(smp_init);
    simplemsg_tap = register_tap("simplemsg");
    smp_services = wmem_map_new_autoreset(wmem_epan_scope(), wmem_file_scope(), smp_svckey_hash,
                                          smp_svckey_equal);
    simplemsg_handle = register_dissector("simplemsg", dissect_simplemsg, proto_simplemsg);
}

void
proto_reg_handoff_simplemsg(void)
{
    dissector_add_uint("ip.proto", SIMPLEMSG_IP_PROTO, simplemsg_handle);
}

/*
 * Editor modelines  -  https://www.wireshark.org/tools/modelines.html
 *
 * Local variables:
 * c-basic-offset: 4
 * tab-width: 8
 * indent-tabs-mode: nil
 * End:
 *
 * vi: set shiftwidth=4 tabstop=8 expandtab:
 * :indentSize=4:tabSize=8:noTabs=true:
 */
