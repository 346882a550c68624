//! Operating-system facts the bench needs: file-descriptor limit, CPU time, memory of a process,
//! the process listening on a loopback port, the ephemeral port range (Linux `/proc`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Raise RLIMIT_NOFILE so `needed` descriptors fit: the soft limit up to the hard limit, and the
/// hard limit too when allowed (root). Returns the resulting soft limit.
pub fn raise_fd_limit(needed: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let cur: u64 = lim.rlim_cur;
    let max: u64 = lim.rlim_max;
    if cur >= needed {
        return Ok(cur);
    }
    if needed > max {
        // Try to lift the hard limit as well (needs CAP_SYS_RESOURCE); bounded by fs.nr_open.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(max);
        let want = needed.min(nr_open).max(max);
        let raised = libc::rlimit {
            rlim_cur: want as libc::rlim_t,
            rlim_max: want as libc::rlim_t,
        };
        // SAFETY: plain syscall with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    let soft = needed.min(max);
    let raised = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(soft)
}

/// User + system CPU time, from getrusage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    pub fn saturating_sub(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    pub fn add(&self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

fn rusage(who: libc::c_int) -> CpuTime {
    // SAFETY: zeroed rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return CpuTime::default();
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    CpuTime {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> CpuTime {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time of the whole process (all threads, including an in-process server).
pub fn process_cpu() -> CpuTime {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of another process, from /proc/PID/stat (utime, stime in clock ticks).
pub fn pid_cpu(pid: u32) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat, clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

fn parse_stat_cpu(stat: &str, ticks: u64) -> Option<CpuTime> {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the fields are: state(3) ppid(4) ... utime(14) stime(15): indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let d = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks.max(1));
    Some(CpuTime {
        user: d(utime),
        system: d(stime),
    })
}

/// Resident memory of a process in bytes (VmRSS from /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

/// Resident memory of this process in bytes.
pub fn self_rss_bytes() -> Option<u64> {
    rss_bytes(std::process::id())
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The pids of the processes listening on the TCP `addr` (loopback; several with SO_REUSEPORT),
/// found through the socket inodes in /proc/net/tcp{,6} and the descriptors in /proc/*/fd. Empty
/// when none can be found (another user's process without privileges, a server in a container...).
pub fn listening_pids(addr: SocketAddr) -> Vec<u32> {
    let port = addr.port();
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listen_inodes(&text, port));
        }
    }
    let mut pids = Vec::new();
    if inodes.is_empty() {
        return pids;
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let listens = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).ok().is_some_and(|target| {
                target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .is_some_and(|inode| inodes.contains(&inode))
            })
        });
        if listens {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Socket inodes in LISTEN state (st 0A) on `port` in a /proc/net/tcp table.
fn listen_inodes(table: &str, port: u16) -> Vec<u64> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode = f.get(9)?.parse::<u64>().ok()?;
            (local.ends_with(&want) && *state == "0A" && inode != 0).then_some(inode)
        })
        .collect()
}

/// How many ephemeral ports one source address has toward one destination
/// (net.ipv4.ip_local_port_range; 28,232 by default).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
            let lo = it.next()??;
            let hi = it.next()??;
            Some(hi.saturating_sub(lo) + 1)
        })
        .unwrap_or(28_232)
}

/// The source addresses to spread `clients` connections to `target` over: none (let the kernel
/// choose) unless the target is IPv4 loopback and the connections would exhaust the ephemeral
/// ports of one source address; then 127.0.0.1, 127.0.0.2, ... each used for at most 90% of the
/// port range.
pub fn auto_source_addrs(target: IpAddr, clients: u64) -> Vec<IpAddr> {
    let per_addr = ephemeral_ports() * 9 / 10;
    match target {
        IpAddr::V4(v4) if v4.is_loopback() && clients > per_addr => {
            let n = clients.div_ceil(per_addr.max(1)).min(250);
            (1..=n)
                .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8)))
                .collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_after_a_name_with_spaces() {
        let stat =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 10 0 0";
        let cpu = parse_stat_cpu(stat, 100).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(500));
    }

    #[test]
    fn vmrss_is_read_in_bytes() {
        assert_eq!(
            parse_vmrss("Name:\tx\nVmRSS:\t  1024 kB\nVmData: 5 kB\n"),
            Some(1024 * 1024)
        );
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn listen_inodes_match_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:0BB9 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0\n\
   2: 0100007F:0BBA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listen_inodes(table, 3001), vec![4242]);
        assert_eq!(listen_inodes(table, 3002), vec![4444]);
        assert!(listen_inodes(table, 80).is_empty());
    }

    #[test]
    fn finds_our_own_listener_from_a_child_view() {
        // We skip our own pid on purpose (the in-process server is measured differently), so
        // a listener in this process is not found.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listening_pids(l.local_addr().unwrap()).is_empty());
    }

    #[test]
    fn thread_cpu_grows_with_work() {
        let before = thread_cpu();
        // Spin for 50 ms of wall time (the counters have a coarse grain, so a fixed number of
        // iterations can finish inside one step of them).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(thread_cpu().total() > before.total());
        assert!(process_cpu().total() >= thread_cpu().total());
    }

    #[test]
    fn source_addresses_only_when_ports_run_out() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(auto_source_addrs(lo, 1000).is_empty());
        let many = auto_source_addrs(lo, 100_000);
        assert!(many.len() >= 4, "{many:?}");
        assert_eq!(many[0], lo);
        assert!(auto_source_addrs("10.0.0.1".parse().unwrap(), 100_000).is_empty());
    }

    #[test]
    fn fd_limit_can_be_raised_to_what_we_have() {
        let got = raise_fd_limit(256).unwrap();
        assert!(got >= 256);
    }
}
