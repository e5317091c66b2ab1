//! `cargo xtask rolling-restart`: two instances of a demo service behind haproxy on
//! loopback, each restarted in turn (SIGTERM, wait for its exit, start a new one on the
//! same port) under steady bounded load through haproxy. Prints requests sent,
//! succeeded and failed; exits non-zero when any failed or an instance did not exit 0.
//!
//! Options: `--bin <package>` (default `telemetry-axum`), `--path <path>` (default
//! `/slow?ms=5`, a request that goes through the drain middleware).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
/// Bound on the whole run's load, whatever happens.
const MAX_LOAD: Duration = Duration::from_secs(90);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    bin: String,
    path: String,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        bin: "telemetry-axum".into(),
        path: "/slow?ms=5".into(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bin" => options.bin = value.clone(),
            "--path" => options.path = value.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> ExitCode {
    crate::run_checked("rolling-restart", parse(args), |options| {
        rolling_restart(options)
    })
}

fn rolling_restart(options: &Options) -> Result<bool, String> {
    if !Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("haproxy is not installed (Debian: apt-get install haproxy)".into());
    }
    let binary = crate::build_debug(&options.bin)?;
    let work = std::env::temp_dir().join(format!("rolling-restart-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let [frontend, port_a, port_b] = free_ports()?;
    let recipe = fs::read_to_string(HAPROXY_CFG).map_err(|e| format!("{HAPROXY_CFG}: {e}"))?;
    let config = render_haproxy(&recipe, frontend, [port_a, port_b])
        .map_err(|e| format!("{HAPROXY_CFG}: {e}"))?;
    let config_path = work.join("haproxy.cfg");
    fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;

    let mut instances = [
        Instance::start(&binary, port_a.port(), &work, "a", 0)?,
        Instance::start(&binary, port_b.port(), &work, "b", 0)?,
    ];
    let mut haproxy = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("haproxy: {e}"))?;
    let result = (|| {
        for instance in &instances {
            instance.wait_ready()?;
        }
        wait_until(Duration::from_secs(10), "haproxy routes requests", || {
            get(frontend, &options.path).is_ok_and(|status| status < 500)
        })?;

        println!(
            "==> load through haproxy on {frontend}: {CLIENTS} clients, GET {}",
            options.path
        );
        let load = Load::start(frontend, &options.path);
        thread::sleep(Duration::from_secs(1));
        let mut clean_exits = true;
        for (index, instance) in instances.iter_mut().enumerate() {
            println!(
                "==> restarting instance {} (port {})",
                instance.name,
                instance.addr.port()
            );
            let code = instance.stop()?;
            println!("    exited with code {code}");
            clean_exits &= code == 0;
            *instance = Instance::start(
                &binary,
                instance.addr.port(),
                &work,
                instance.name,
                index + 1,
            )?;
            instance.wait_ready()?;
            // haproxy marks it up after `rise 2` checks 500 ms apart.
            thread::sleep(Duration::from_millis(1500));
        }
        thread::sleep(Duration::from_secs(1));
        let (sent, succeeded, failed) = load.stop();
        println!("rolling restart: sent {sent}, succeeded {succeeded}, failed {failed}");
        Ok(failed == 0 && clean_exits && sent > 0)
    })();
    for instance in &mut instances {
        let _ = instance.stop();
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    let _ = fs::remove_dir_all(&work);
    result
}

/// The deployment recipe this check runs.
pub const HAPROXY_CFG: &str = "docs/deploy/haproxy.cfg";

/// `recipe` with the address of its one `bind` line replaced by `frontend`, and those
/// of its `server a` and `server b` lines by `servers`; everything else as it is.
fn render_haproxy(
    recipe: &str,
    frontend: SocketAddr,
    servers: [SocketAddr; 2],
) -> Result<String, String> {
    let mut found = [0usize; 3];
    let mut rendered = String::with_capacity(recipe.len());
    for line in recipe.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let replaced = match words.as_slice() {
            ["bind", _address, rest @ ..] => {
                found[0] += 1;
                Some(format!("bind {frontend} {}", rest.join(" ")))
            }
            ["server", name @ ("a" | "b"), _address, rest @ ..] => {
                let index = usize::from(*name == "b");
                found[1 + index] += 1;
                Some(format!(
                    "server {name} {} {}",
                    servers[index],
                    rest.join(" ")
                ))
            }
            _ => None,
        };
        match replaced {
            Some(replaced) => {
                rendered.push_str(indent);
                rendered.push_str(replaced.trim_end());
            }
            None => rendered.push_str(line),
        }
        rendered.push('\n');
    }
    match found {
        [1, 1, 1] => Ok(rendered),
        [bind, a, b] => Err(format!(
            "expected one `bind` line and one line each for `server a` and `server b`; \
             found {bind}, {a} and {b}"
        )),
    }
}

/// Three ports free on 127.0.0.1 (bound, then released).
fn free_ports() -> Result<[SocketAddr; 3], String> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}")))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().map_err(|e| format!("local address: {e}")))
        .collect::<Result<_, _>>()?;
    Ok([addrs[0], addrs[1], addrs[2]])
}

struct Instance {
    name: &'static str,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Instance {
    fn start(
        binary: &Path,
        port: u16,
        work: &Path,
        name: &'static str,
        generation: usize,
    ) -> Result<Self, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = fs::File::create(work.join(format!("{name}-{generation}.log")))
            .map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(binary)
            .env("BIND_ADDR", addr.to_string())
            .env("DATABASE_PATH", work.join(format!("{name}.db")))
            .env("SHUTDOWN_DELAY", "2")
            .env("SHUTDOWN_TIMEOUT", "10")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        Ok(Self {
            name,
            addr,
            child: Some(child),
        })
    }

    fn wait_ready(&self) -> Result<(), String> {
        wait_until(Duration::from_secs(20), "the instance is ready", || {
            get(self.addr, "/health/ready") == Ok(200)
        })
    }

    /// SIGTERM, then waits (bounded) for the exit code.
    fn stop(&mut self) -> Result<i32, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(0);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status.code().unwrap_or(-1)),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "instance {} did not exit within 30 s; killed",
                        self.name
                    ));
                }
                Err(e) => return Err(format!("waiting for instance {}: {e}", self.name)),
            }
        }
    }
}

fn wait_until(bound: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!("timed out waiting until {what}"))
}

/// One `GET` on a new connection; the status code.
fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    crate::http::get(addr, path, IO_TIMEOUT).map(|(status, _)| status)
}

struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
    clients: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(frontend: SocketAddr, path: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let started = Instant::now();
        let clients = (0..CLIENTS)
            .map(|_| {
                let (stop, counts, path) =
                    (Arc::clone(&stop), Arc::clone(&counts), path.to_owned());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
                        counts[0].fetch_add(1, Ordering::Relaxed);
                        match get(frontend, &path) {
                            Ok(status) if status < 500 => counts[1].fetch_add(1, Ordering::Relaxed),
                            Ok(status) => {
                                eprintln!("    failed: status {status}");
                                counts[2].fetch_add(1, Ordering::Relaxed)
                            }
                            Err(error) => {
                                eprintln!("    failed: {error}");
                                counts[2].fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Self {
            stop,
            counts,
            clients,
        }
    }

    fn stop(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.join();
        }
        let [sent, succeeded, failed] = &*self.counts;
        (
            sent.load(Ordering::Relaxed),
            succeeded.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_is_rendered_with_the_given_addresses_and_nothing_else_changes() {
        let recipe = fs::read_to_string(format!("{}/../{HAPROXY_CFG}", env!("CARGO_MANIFEST_DIR")))
            .expect("the recipe");
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let rendered =
            render_haproxy(&recipe, addr(40000), [addr(40001), addr(40002)]).expect("rendered");
        assert!(
            rendered.contains("    bind 127.0.0.1:40000\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("    server a 127.0.0.1:40001 check\n"),
            "{rendered}"
        );
        assert!(
            rendered.contains("    server b 127.0.0.1:40002 check\n"),
            "{rendered}"
        );
        let changed: Vec<(&str, &str)> = recipe
            .lines()
            .zip(rendered.lines())
            .filter(|(before, after)| before != after)
            .collect();
        assert_eq!(changed.len(), 3, "{changed:#?}");
        assert_eq!(recipe.lines().count(), rendered.lines().count());
    }

    #[test]
    fn a_recipe_without_its_two_servers_is_an_error() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let err = render_haproxy("frontend web\n    bind :80\n", addr, [addr, addr])
            .expect_err("no servers");
        assert!(err.contains("found 1, 0 and 0"), "{err}");
    }
}
