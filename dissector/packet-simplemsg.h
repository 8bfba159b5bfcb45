/* packet-simplemsg.h
 * Routines for the Simple Message Protocol (IPv4 protocol 121) dissection
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef __PACKET_SIMPLEMSG_H__
#define __PACKET_SIMPLEMSG_H__

void proto_register_simplemsg(void);
void proto_reg_handoff_simplemsg(void);
void register_simplemsg_stats_tree(void);

#endif /* __PACKET_SIMPLEMSG_H__ */
