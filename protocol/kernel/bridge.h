// The remote bridge (issue 8): the kernel's send/receive/reply across nodes over IPv4 protocol
// 121. The protocol engine (protocol/engine.h) runs in the net thread only, over an lwIP raw PCB;
// kernel threads never touch lwIP or the engine: they link a request (an Op on their own stack)
// onto the bridge's list, wake the net thread and block on their own kernel::Event.
//
// Remote senders arriving here become kernel SenderRecords (kind kRemote) from a pool of
// Config::requests_max records (the engine never holds more requests than that, whatever the
// number of peers: its credit is granted from that table), so a channel's queue holds at most
// local threads + that pool.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ipc.h"
#include "status.h"

namespace bridge {

constexpr uint32_t kNamesChannel = 0xFFFF0001u;  // `_names`: the list of attached names (as libsmp)
constexpr uint32_t kStatsChannel = 0xFFFF0002u;  // `_stats`: "hwm_queue=N hwm_proto_bytes=N ..."
constexpr size_t kAttachedMax = 16;              // service names attached on this node
constexpr size_t kServiceNameBytes = 33;         // wire::kNameBytesMax + NUL

// Starts the bridge: registers the net client and the IPC hooks, reads `peers=` and
// `services=` from the kernel command line. Called from net::node_extensions().
void init();
bool running();

// Attaches `name` on this node for `channel` (any thread).
kernel::Status name_attach(const char* name, kernel::Channel* channel);
// "NODE/SERVICE" or a bare "SERVICE" (this node first, then the cluster). A remote target gives
// a Connection whose send/pulse go through the bridge; a local one a plain local connection.
// kNoSuchNode: NODE is not in the static peer table; kNoSuchService: no node has SERVICE.
// *peer_out (optional) receives the engine's PeerRef value (0 when local).
kernel::Result<kernel::Connection*> name_open(const char* target, uint64_t deadline_ns,
                                              uint32_t* peer_out = nullptr);
// A connection to a reserved channel of the node behind peer (e.g. kStatsChannel), a PeerRef value
// from name_open's peer_out: the connection takes a reference of its own, so the peer stays in
// the engine's table while either is open (kPeerRebooted if that peer rebooted since).
kernel::Result<kernel::Connection*> connect_peer_channel(uint32_t peer, uint32_t channel);
// The local kernel channel attached under `name`, or nullptr.
kernel::Channel* local_channel(const char* name);

// Shell output (each runs the snapshot in the net thread, prints in the caller's).
void print_peers();
void print_names();
// The static peer table's node names (this node excluded); returns how many.
size_t static_peer_names(const char** out, size_t cap);
void print_stats();
// Stage times of the round trips since the last `lat` (then reset); on = 1 / 0 switches the
// marks on / off (and resets) instead of printing, -1 prints.
void print_lat(int on);
// "hwm_queue=N hwm_proto_bytes=N bound_proto_bytes=N" for the channel named `service` here.
size_t format_stats_line(const char* service, char* out, size_t cap);

// services.cc: `services=echo,kv` from the command line.
void services_start(const char* list);
bool service_stat(const char* name, uint64_t* requests, size_t* hwm_queue, uint64_t* pulses);
// commands.cc
void register_commands();
// ipc_remote_tests.cc: the `_ipctest` server thread and the `remote-ipc-tests` command.
void ipc_test_server_start();

}  // namespace bridge
