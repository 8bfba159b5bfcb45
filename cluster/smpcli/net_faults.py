"""Faults on the cluster's network, made by the real Linux kernel: `./smp fault ...`.

nftables in the cluster's namespace (root mode only: the unprivileged mode has no bridge):
  loss       table bridge smp_loss: PCT% of protocol-121 frames dropped at random on br0, in the
             forward hook (node to node) and the input/output hooks (node to and from the
             namespace's own address, where smpctl runs); table netdev smp_dup: DUP% of the
             protocol-121 frames on their way into each node duplicated (an egress hook per tap).
             (`tc netem` is not in this kernel.)
  partition  table bridge smp_part: every IPv4 frame between two addresses dropped, both ways,
             in the same three hooks; one rule pair per hook and partition, named in the rules'
             comments ("part A B"); healing one deletes its rules by handle, the others count on.
Every rule counts what it did; `./smp fault show` prints the counts. The tables are ours alone:
`clear` deletes them, and `./smp down` deletes them with the namespace.
"""
import json
import subprocess

from . import common
from . import net_cluster as nc

LOSS_TABLE = "smp_loss"
DUP_TABLE = "smp_dup"
PART_TABLE = "smp_part"
BRIDGE_HOOKS = ("forward", "input", "output")
HOST = nc.HOST_PEER  # the namespace's own address, as the nodes' peer tables name it


def _require(state):
    if state["mode"] != "root":
        common.die("faults need the root mode's bridge (run ./smp up as root)")


def _nft(state, args, script=None, check=True):
    r = subprocess.run(nc.ns_prefix(state) + ["nft", *args], input=script, text=True,
                       capture_output=True)
    if check and r.returncode != 0:
        common.die(f"nft {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


def _replace(state, family, table, body):
    """One nft transaction: the table (made first so that deleting it cannot fail), deleted,
    then made again with body (none: it stays deleted)."""
    script = f"table {family} {table}\ndelete table {family} {table}\n"
    if body:
        script += f"table {family} {table} {{\n{body}}}\n"
    _nft(state, ["-f", "-"], script)


def address_of(state, name):
    """A node's name (or address) or `host` -> its IPv4 address."""
    if name == HOST or name == nc.NS_ADDRESS:
        return nc.NS_ADDRESS
    return nc.find_node(state, name)["ip"]


def name_of(state, ip):
    if ip == nc.NS_ADDRESS:
        return HOST
    return next((nd["name"] for nd in state["nodes"] if nd["ip"] == ip), ip)


def set_loss(state, drop_pct, dup_pct):
    """drop_pct% of protocol-121 frames dropped on the bridge, dup_pct% duplicated into the
    nodes (whole percents, 0..100, checked by the caller); 0 and 0 remove both."""
    _require(state)
    chains = "".join(
        f"  chain {hook} {{ type filter hook {hook} priority 0;\n"
        f"    ip protocol 121 numgen random mod 100 < {drop_pct} counter drop "
        f"comment \"loss {drop_pct}\"; }}\n" for hook in BRIDGE_HOOKS)
    _replace(state, "bridge", LOSS_TABLE, chains if drop_pct else None)
    dup = "".join(
        f"  chain eg_{nd['tap']} {{ type filter hook egress device \"{nd['tap']}\" priority 0;\n"
        f"    ip protocol 121 numgen random mod 100 < {dup_pct} counter dup to \"{nd['tap']}\" "
        f"comment \"dup {dup_pct}\"; }}\n" for nd in state["nodes"])
    _replace(state, "netdev", DUP_TABLE, dup if dup_pct else None)


def _rules(state, family, table):
    """[(chain, comment, packets, handle)] of one of our tables; [] when it does not exist."""
    r = _nft(state, ["-j", "-a", "list", "table", family, table], check=False)
    if r.returncode != 0:
        return []
    out = []
    for item in json.loads(r.stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
            out.append((rule["chain"], rule.get("comment", ""), packets, rule.get("handle")))
    return out


def _partitions(state):
    """{(ip_a, ip_b): (packets dropped, [(chain, handle)])} from the partition rules' comments
    ("part A B"), in the order they were made."""
    parts = {}
    for chain, comment, packets, handle in _rules(state, "bridge", PART_TABLE):
        words = comment.split()
        if len(words) == 3 and words[0] == "part":
            n, where = parts.get((words[1], words[2]), (0, []))
            parts[(words[1], words[2])] = (n + packets, where + [(chain, handle)])
    return parts


def _pair(state, a, b):
    ia, ib = address_of(state, a), address_of(state, b)
    if ia == ib:
        common.die(f"a partition needs two different ends ({a}, {b})", 2)
    return tuple(sorted((ia, ib), key=lambda ip: tuple(int(x) for x in ip.split("."))))


def partition(state, a, b):
    """Cuts a from b, both ways, beside the partitions already made (their counts go on)."""
    _require(state)
    pair = _pair(state, a, b)
    if pair in _partitions(state):
        common.die(f"{a} and {b} are already partitioned (./smp fault show)", 1)
    x, y = pair
    script = "".join(f"add table bridge {PART_TABLE}\n"
                     f"add chain bridge {PART_TABLE} {hook} "
                     f"{{ type filter hook {hook} priority 0; }}\n" for hook in BRIDGE_HOOKS)
    script += "".join(f"add rule bridge {PART_TABLE} {hook} ip saddr {s} ip daddr {d} counter "
                      f"drop comment \"part {x} {y}\"\n"
                      for hook in BRIDGE_HOOKS for s, d in ((x, y), (y, x)))
    _nft(state, ["-f", "-"], script)


def heal(state, a=None, b=None):
    """Removes one partition (a, b) or, without them, every partition."""
    _require(state)
    if a is None:
        _replace(state, "bridge", PART_TABLE, None)
        return
    pair = _pair(state, a, b)
    parts = _partitions(state)
    if pair not in parts:
        common.die(f"{a} and {b} are not partitioned (./smp fault show)", 1)
    _nft(state, ["-f", "-"], "".join(f"delete rule bridge {PART_TABLE} {chain} handle {h}\n"
                                     for chain, h in parts[pair][1]))


def clear(state):
    _require(state)
    set_loss(state, 0, 0)
    heal(state)


def show(state):
    """What is in force: {"loss_pct", "dropped", "dup_pct", "duplicated", "partitions": [...]}."""
    _require(state)
    loss = _rules(state, "bridge", LOSS_TABLE)
    dup = _rules(state, "netdev", DUP_TABLE)
    pct = lambda rules, word: next((int(c.split()[1]) for _ch, c, _p, _h in rules
                                    if c.split()[:1] == [word]), 0)
    return {"loss_pct": pct(loss, "loss"), "dropped": sum(r[2] for r in loss),
            "dup_pct": pct(dup, "dup"), "duplicated": sum(r[2] for r in dup),
            "partitions": [{"a": name_of(state, x), "b": name_of(state, y), "dropped": n}
                           for (x, y), (n, _where) in _partitions(state).items()]}
