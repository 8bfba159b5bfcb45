/* packet-simplemsg.c
 * Routines for the Simple Message Protocol (IPv4 protocol 121) dissection
 * Wire format: smp/SPEC.md of the simplemsg project.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include <wireshark.h>

#include <epan/packet.h>
#include <epan/ipproto.h>

#include "packet-simplemsg.h"

#define SIMPLEMSG_IP_PROTO 121

static int proto_simplemsg = -1;
static int hf_simplemsg_data = -1;
static gint ett_simplemsg = -1;

static dissector_handle_t simplemsg_handle;

static int
dissect_simplemsg(tvbuff_t *tvb, packet_info *pinfo, proto_tree *tree, void *data _U_)
{
    proto_item *ti;
    proto_tree *smp_tree;

    col_set_str(pinfo->cinfo, COL_PROTOCOL, "SIMPLEMSG");
    col_clear(pinfo->cinfo, COL_INFO);
    ti = proto_tree_add_item(tree, proto_simplemsg, tvb, 0, -1, ENC_NA);
    smp_tree = proto_item_add_subtree(ti, ett_simplemsg);
    proto_tree_add_item(smp_tree, hf_simplemsg_data, tvb, 0, -1, ENC_NA);
    return tvb_captured_length(tvb);
}

void
proto_register_simplemsg(void)
{
    static hf_register_info hf[] = {
        { &hf_simplemsg_data,
          { "Data", "simplemsg.data", FT_BYTES, BASE_NONE, NULL, 0x0, NULL, HFILL }},
    };
    static gint *ett[] = {
        &ett_simplemsg,
    };

    proto_simplemsg = proto_register_protocol("Simple Message Protocol (simplemsg)",
                                              "SIMPLEMSG", "simplemsg");
    proto_register_field_array(proto_simplemsg, hf, array_length(hf));
    proto_register_subtree_array(ett, array_length(ett));
    simplemsg_handle = register_dissector("simplemsg", dissect_simplemsg, proto_simplemsg);
}

void
proto_reg_handoff_simplemsg(void)
{
    dissector_add_uint("ip.proto", SIMPLEMSG_IP_PROTO, simplemsg_handle);
}
