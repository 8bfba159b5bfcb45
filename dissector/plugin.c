/* plugin.c
 * Plugin entry points for the simplemsg dissector, as Wireshark 4.0 expects them
 * (Wireshark generates this file for its own plugins; an out-of-tree plugin writes it by hand).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define WS_BUILD_DLL
#include <wireshark.h>
#include <epan/packet.h>
#include <epan/proto.h>
#include <epan/tap.h>

#include "packet-simplemsg.h"

#ifndef SIMPLEMSG_PLUGIN_VERSION
#define SIMPLEMSG_PLUGIN_VERSION "0.0.0"
#endif

WS_DLL_PUBLIC_DEF const gchar plugin_version[] = SIMPLEMSG_PLUGIN_VERSION;
WS_DLL_PUBLIC_DEF const int plugin_want_major = WIRESHARK_VERSION_MAJOR;
WS_DLL_PUBLIC_DEF const int plugin_want_minor = WIRESHARK_VERSION_MINOR;

WS_DLL_PUBLIC void plugin_register(void);

void
plugin_register(void)
{
    static proto_plugin plug_simplemsg;

    plug_simplemsg.register_protoinfo = proto_register_simplemsg;
    plug_simplemsg.register_handoff = proto_reg_handoff_simplemsg;
    proto_register_plugin(&plug_simplemsg);

    /* The statistics tree (-z simplemsg,tree): tap listeners are registered after the
     * dissectors, so it comes as a tap plugin of its own. */
    static tap_plugin plug_simplemsg_stats;
    plug_simplemsg_stats.register_tap_listener = register_simplemsg_stats_tree;
    tap_register_plugin(&plug_simplemsg_stats);
}
