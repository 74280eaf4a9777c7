//! A private network for one test cluster: a host per member, and partitions between them.
//!
//! Each host is a Linux network namespace with one veth link to a bridge in the test
//! process's own (root) namespace. The bridge owns a /24 of `10.77.0.0/16` and holds its `.1`
//! address, so the test process and the etcdctl it runs reach every host directly; host `i`
//! is `.10+i`. A server is put on a host by running it under `ip netns exec <netns>`, which
//! execs in place, so the pid the harness holds is the server's own.
//!
//! Partitions are blackhole routes: to cut hosts `a` and `b` apart, `a` gets a
//! `blackhole <b>/32` route and `b` one to `a`. Each side then drops whatever it would send to
//! the other, replies included, so traffic stops both ways, also on connections that were
//! already open (a route change invalidates the routes cached on sockets). The gateway `.1`
//! is never blackholed: clients in the test process keep reaching every host, the isolated
//! ones included, which is what lets a test ask a minority member for a read. Routes need
//! nothing beyond iproute2: no netfilter (no `iptables`/`nft` on a stock Debian 12) and no
//! `sch_netem` kernel module.
//!
//! This needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Without it [`Network::create`] panics
//! with the reason: a partition test that cannot partition must fail, not pass vacuously.
//!
//! Names are unique per network even across test processes: a /24 is claimed by creating its
//! bridge `bbr-<slot>` (creation is atomic, so two claimants cannot both win), and namespaces
//! are named `bramble-e2e-<pid>-s<slot>-h<host>`. Everything is removed on drop, also while a
//! failed test unwinds. What a process killed outright leaves behind (namespaces named
//! after a dead pid, bridges whose alias `bramble-e2e-pid-<pid>` names one) is reclaimed
//! the next time a network is created.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The first two octets of every test network.
const PREFIX: [u8; 2] = [10, 77];
/// Host `i` gets address `.HOST_BASE + i`; `.1` is the test process on the bridge.
const HOST_BASE: usize = 10;
/// Hosts per network: the rest of the /24 after the base.
const MAX_HOSTS: usize = 254 - HOST_BASE;
/// Alias set on our bridges, followed by the owning pid.
const ALIAS_PREFIX: &str = "bramble-e2e-pid-";

/// Networks created by this process so far, to spread slot choices.
static CREATED: AtomicUsize = AtomicUsize::new(0);

/// One host: a namespace and the root-side end of its veth pair.
#[derive(Debug)]
struct Host {
    netns: String,
    veth: String,
    ip: Ipv4Addr,
}

/// A bridge, its hosts, and the cuts currently in force; torn down on drop.
#[derive(Debug)]
pub struct Network {
    slot: u8,
    bridge: String,
    hosts: Vec<Host>,
    /// Host pairs `(a, b)` with `a < b` currently cut apart.
    cuts: BTreeSet<(usize, usize)>,
}

impl Network {
    /// Creates a network with `hosts` hosts. Panics if namespaces cannot be created (not
    /// root) or no /24 in `10.77.0.0/16` is free.
    pub fn create(hosts: usize) -> Network {
        let mut network = claim_slot();
        for _ in 0..hosts {
            network.add_host();
        }
        network
    }

    /// Adds one more host (for a member joining later) and returns its index.
    pub(crate) fn add_host(&mut self) -> usize {
        let index = self.hosts.len();
        assert!(
            index < MAX_HOSTS,
            "a test network holds at most {MAX_HOSTS} hosts"
        );
        let ip = Ipv4Addr::new(PREFIX[0], PREFIX[1], self.slot, (HOST_BASE + index) as u8);
        let netns = format!("bramble-e2e-{}-s{}-h{index}", std::process::id(), self.slot);
        let veth = format!("{}-{index}", self.bridge);
        ip_ok(&["netns", "add", &netns]);
        // Recorded right away so a failure below still removes the namespace on drop.
        self.hosts.push(Host {
            netns: netns.clone(),
            veth: veth.clone(),
            ip,
        });
        // The far end is created inside the namespace, so no name clash with the root's eth0.
        ip_ok(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip_ok(&["link", "set", &veth, "master", &self.bridge, "up"]);
        ip_ok(&["-n", &netns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        ip_ok(&["-n", &netns, "link", "set", "eth0", "up"]);
        index
    }

    /// How many hosts the network has.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True if the network has no hosts yet.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The address of host `host`, where its server listens.
    pub fn ip(&self, host: usize) -> Ipv4Addr {
        self.host(host).ip
    }

    /// The test process's own address on the bridge, the source of every client connection.
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.slot, 1)
    }

    /// The bridge's name in the root namespace (`bbr-<slot>`).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The namespace name of host `host`.
    pub fn netns(&self, host: usize) -> &str {
        &self.host(host).netns
    }

    /// Every namespace name, for checks that they are gone after drop.
    pub fn netns_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.netns.clone()).collect()
    }

    /// A command that runs `program` on host `host` (`ip netns exec <netns> <program>`).
    pub fn command(&self, host: usize, program: &Path) -> Command {
        exec(self.netns(host), program)
    }

    /// Cuts traffic between hosts in different groups, replacing any earlier partition.
    /// Hosts named in no group keep all their links; each host may be named once.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut seen = BTreeSet::new();
        for &h in groups.iter().flat_map(|g| g.iter()) {
            self.host(h);
            assert!(
                seen.insert(h),
                "host {h} is in more than one partition group"
            );
        }
        self.heal();
        for (i, a_group) in groups.iter().enumerate() {
            for b_group in &groups[i + 1..] {
                for &a in a_group.iter() {
                    for &b in b_group.iter() {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for (a, b) in std::mem::take(&mut self.cuts) {
            for (from, to) in [(a, b), (b, a)] {
                let route = format!("{}/32", self.hosts[to].ip);
                ip_ok(&[
                    "-n",
                    &self.hosts[from].netns,
                    "route",
                    "del",
                    "blackhole",
                    &route,
                ]);
            }
        }
    }

    /// Blackholes `a`'s route to `b` and `b`'s to `a`.
    fn cut(&mut self, a: usize, b: usize) {
        if a == b || !self.cuts.insert((a.min(b), a.max(b))) {
            return;
        }
        for (from, to) in [(a, b), (b, a)] {
            let route = format!("{}/32", self.hosts[to].ip);
            ip_ok(&[
                "-n",
                &self.hosts[from].netns,
                "route",
                "add",
                "blackhole",
                &route,
            ]);
        }
    }

    fn host(&self, host: usize) -> &Host {
        self.hosts.get(host).unwrap_or_else(|| {
            panic!(
                "host {host} does not exist (the network has {})",
                self.hosts.len()
            )
        })
    }
}

impl Drop for Network {
    /// Best effort and never panicking (this also runs while a failed test unwinds): servers
    /// on the hosts must be gone already, or their namespaces live on until they exit.
    fn drop(&mut self) {
        for host in &self.hosts {
            // Deleting one end of a veth pair deletes both, right now; namespace teardown
            // alone would remove them only asynchronously.
            if let Err(e) = ip(&["link", "del", &host.veth]) {
                eprintln!("netns cleanup: {e}");
            }
            if let Err(e) = ip(&["netns", "del", &host.netns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("netns cleanup: {e}");
        }
    }
}

/// A command that runs `program` in namespace `netns`. `ip netns exec` execs the program in
/// place (no fork), so the child's pid is the program's.
pub fn exec(netns: &str, program: &Path) -> Command {
    let mut cmd = Command::new(ip_bin());
    cmd.args(["netns", "exec", netns]).arg(program);
    cmd
}

/// Finds a free /24, creates and configures its bridge, and returns the empty network.
fn claim_slot() -> Network {
    reclaim_stale();
    let created = CREATED.fetch_add(1, Ordering::Relaxed);
    // Start somewhere that depends on the process and the count, so parallel test processes
    // rarely probe the same slots.
    let start = (std::process::id() as usize)
        .wrapping_mul(31)
        .wrapping_add(created * 7);
    let in_use = addresses_in_use();
    for probe in 0..256 {
        let slot = ((start + probe) % 256) as u8;
        let subnet = format!("{}.{}.{slot}.", PREFIX[0], PREFIX[1]);
        if in_use.contains(&subnet) {
            continue;
        }
        let bridge = format!("bbr-{slot}");
        match ip(&["link", "add", &bridge, "type", "bridge"]) {
            Ok(_) => {}
            // Another live network holds this slot.
            Err(e) if e.contains("File exists") => continue,
            Err(e) => panic!(
                "cannot create a bridge for a test network (network namespaces need root, \
                 i.e. CAP_NET_ADMIN and CAP_SYS_ADMIN, and iproute2): {e}"
            ),
        }
        // From here on the bridge is ours; Drop removes it if a step below panics.
        let network = Network {
            slot,
            bridge: bridge.clone(),
            hosts: Vec::new(),
            cuts: BTreeSet::new(),
        };
        let alias = format!("{ALIAS_PREFIX}{}", std::process::id());
        ip_ok(&["link", "set", &bridge, "alias", &alias]);
        // nf_call_iptables 0: on hosts where br_netfilter is loaded (Docker), bridged traffic
        // would otherwise cross the FORWARD chain, whose policy may drop it.
        ip_ok(&[
            "link",
            "set",
            &bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "nf_call_iptables",
            "0",
        ]);
        let gateway = format!("{}/24", network.gateway());
        ip_ok(&["addr", "add", &gateway, "dev", &bridge]);
        ip_ok(&["link", "set", &bridge, "up"]);
        return network;
    }
    panic!(
        "no free /24 in {}.{}.0.0/16 for a test network",
        PREFIX[0], PREFIX[1]
    );
}

/// Removes namespaces and bridges left behind by test processes that no longer run (killed
/// outright, so their `Drop` never ran). A pid that is alive, or was reused, keeps its
/// resources: at worst a leak, never someone else's network deleted.
fn reclaim_stale() {
    let dead = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let pid = name
                .strip_prefix("bramble-e2e-")
                .and_then(|rest| rest.split('-').next());
            if pid.is_some_and(dead) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(links) = ip(&["-o", "link", "show", "type", "bridge"]) {
        for line in links.lines() {
            // "12: bbr-5: <...> ... alias bramble-e2e-pid-1234"
            let Some(name) = line.split_whitespace().nth(1) else {
                continue;
            };
            let name = name.trim_end_matches(':');
            let pid = line
                .split_whitespace()
                .skip_while(|w| *w != "alias")
                .nth(1)
                .and_then(|alias| alias.strip_prefix(ALIAS_PREFIX));
            if name.starts_with("bbr-") && pid.is_some_and(dead) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// The `10.77.<slot>.` prefixes that already appear in an address or route on this machine.
fn addresses_in_use() -> BTreeSet<String> {
    let mut text = ip(&["-4", "-o", "addr", "show"]).unwrap_or_default();
    text.push_str(&ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default());
    let marker = format!("{}.{}.", PREFIX[0], PREFIX[1]);
    let mut used = BTreeSet::new();
    for (pos, _) in text.match_indices(&marker) {
        let rest = &text[pos + marker.len()..];
        let slot: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !slot.is_empty() {
            used.insert(format!("{marker}{slot}."));
        }
    }
    used
}

/// The `ip` binary: root's PATH has it, but a test run under sudo may not.
fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("ip")
}

/// Runs `ip <args>`; stdout on success, the command and its stderr on failure.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip_bin())
        .args(args)
        .output()
        .map_err(|e| format!("run `ip {}`: {e} (install iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip <args>` and panics with its error if it fails.
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}
