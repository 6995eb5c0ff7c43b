//! The real I2C path through a real kernel: Debian 12's kernel in qemu (kernel_vm), whose
//! `/dev/i2c-N` is a USB I2C adapter (the kernel's i2c-robotfuzz-osif or i2c-tiny-usb driver)
//! on an emulated USB bus inside the guest (dummy_hcd), its device side a gadgetfs program that
//! relays each I2C message to the virtual SE050 in this test process.
//!
//! ```text
//!   guest: e2e-i2c-guest keygen/ecdh ── libpkcs11_se050.so (transport = "i2c": I2cdev, I2C_RDWR)
//!            │ ioctl
//!          i2c-dev ── i2c core (tracepoints i2c:*) ── i2c-robotfuzz-osif ── usbcore ── dummy_hcd
//!                                                                                      │ USB
//!          e2e-i2c-guest gadget (gadgetfs ep0) ── TCP over the VM's link ────────────────┘
//!   host:  relay.rs ── VirtualSe050 (embedded_hal I2c) ── its FaultHandle, scripted by the test
//! ```
//! Why this route: no Debian kernel (bookworm's 6.1 or 6.12, amd64 or arm64) has
//! CONFIG_I2C_VIRTIO, so there is no virtio-i2c adapter to give a vhost-user backend to; CUSE
//! would make `/dev/i2c-N` without the i2c core (no tracepoints, no i2c-dev). The USB adapters'
//! drivers, dummy_hcd and gadgetfs are modules of Debian's kernel, so everything under the
//! module's ioctl is the kernel's own code. The OSIF driver reports an address NACK as
//! EREMOTEIO, as the Raspberry Pi's i2c-bcm2835 does; i2c-tiny-usb says ENXIO, as most do.

pub mod relay;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::{FaultHandle, VirtualOptions, VirtualSe050};
use tempfile::TempDir;

use crate::artifacts::module_path;
use crate::kernel_vm::cpio::Cpio;
use crate::kernel_vm::initramfs::{add_with_libraries, read};
use crate::kernel_vm::package::{load_order, EXTRA_CACHED_MODULES};
use crate::kernel_vm::{GuestOutput, HostLink, KernelPackage, KernelVm};
pub use relay::RelayedChip;

/// The relay's TCP port on the host side of the VM's link.
const RELAY_PORT: u16 = 47048;
/// How long the guest gets to enumerate the USB adapter and register its I2C bus.
const ADAPTER_TIMEOUT_S: u32 = 60;

/// Which USB I2C adapter the guest's bus is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// RobotFuzz OSIF: an address NACK is EREMOTEIO, as on a Raspberry Pi.
    Osif,
    /// i2c-tiny-usb: an address NACK is ENXIO, as with most bus drivers.
    TinyUsb,
}

impl Adapter {
    /// The gadget's name for it.
    fn gadget_name(self) -> &'static str {
        match self {
            Adapter::Osif => "osif",
            Adapter::TinyUsb => "tiny-usb",
        }
    }

    /// What its driver names the I2C adapter (/sys/class/i2c-adapter/*/name).
    fn adapter_name(self) -> &'static str {
        match self {
            Adapter::Osif => "OSIF at bus",
            Adapter::TinyUsb => "i2c-tiny-usb at bus",
        }
    }

    /// The errno its driver reports an address NACK with.
    pub fn nack_errno(self) -> i32 {
        match self {
            Adapter::Osif => libc::EREMOTEIO,
            Adapter::TinyUsb => libc::ENXIO,
        }
    }
}

/// The guest, its I2C bus and the virtual SE050 behind it.
pub struct I2cGuest {
    pub vm: KernelVm,
    /// The host side of the VM's link (the relay listens there).
    _host: HostLink,
    relay_address: String,
    pub chip: Arc<RelayedChip>,
    /// The adapter and its `/dev/i2c-N` in the guest.
    bus: Mutex<(Adapter, String)>,
    state_dir: TempDir,
    latency: Duration,
}

impl I2cGuest {
    /// Boots the guest with `guest_tool` (the e2e-i2c-guest binary) and the built module, a
    /// fresh virtual SE050 whose keygen/ECDH take `latency`, and brings up the I2C bus.
    pub fn start(guest_tool: &Path, latency: Duration) -> I2cGuest {
        let state_dir = tempfile::Builder::new()
            .prefix("e2e-i2c-guest-")
            .tempdir()
            .expect("cannot create a temporary directory");
        crate::exit_cleanup::remove_at_exit(state_dir.path());
        let state = state_dir.path().join("se050.state");
        let applet = VirtualApplet::open(&state, latency)
            .unwrap_or_else(|e| panic!("cannot create the virtual SE050's state: {e:?}"));
        let options = VirtualOptions {
            faults: FaultHandle::new(23),
            ..VirtualOptions::default()
        };
        let chip = RelayedChip::new(VirtualSe050::new(Box::new(applet), options));

        let started = Instant::now();
        let tool = guest_tool.to_path_buf();
        let vm = KernelVm::boot_with_extra_initramfs(&|kernel| guest_files(kernel, &tool));
        let host = vm.attach_host("i2c");
        let relay_address = format!("{}:{RELAY_PORT}", host.address);
        relay::serve(
            relay::listen_in_namespace(host.ns.name(), &relay_address),
            chip.clone(),
        );
        let out = vm.run_with_timeout(&setup_script(), Duration::from_secs(60));
        if !out.success() {
            vm.fail(&format!(
                "the guest's USB and I2C modules did not load (exit {}):\n{}",
                out.status, out.output
            ));
        }
        let guest = I2cGuest {
            vm,
            _host: host,
            relay_address,
            chip,
            bus: Mutex::new((Adapter::Osif, String::new())),
            state_dir,
            latency,
        };
        guest.use_adapter(Adapter::Osif);
        eprintln!(
            "i2c guest: {} up under {} in {:.1} s",
            guest.bus(),
            guest.vm.accelerator(),
            started.elapsed().as_secs_f64()
        );
        guest
    }

    /// `/dev/i2c-N` in the guest.
    pub fn bus(&self) -> String {
        self.bus.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// The adapter the bus is now.
    pub fn adapter(&self) -> Adapter {
        self.bus.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Makes the guest's bus the `adapter` (the gadget started again as that adapter: the old
    /// USB device goes, the new one enumerates and its driver registers a new I2C bus), and
    /// points the module's configuration at it.
    pub fn use_adapter(&self, adapter: Adapter) {
        let out = self.vm.run_with_timeout(
            &start_gadget_script(adapter, &self.relay_address),
            Duration::from_secs(ADAPTER_TIMEOUT_S as u64 + 30),
        );
        if !out.success() {
            self.vm.fail(&format!(
                "the guest's I2C bus did not come up as {adapter:?} (exit {}):\n{}",
                out.status, out.output
            ));
        }
        let bus = out
            .output
            .lines()
            .find_map(|l| l.strip_prefix("bus "))
            .map(|n| format!("/dev/{}", n.trim()))
            .unwrap_or_else(|| {
                self.vm
                    .fail(&format!("no bus in the gadget's start:\n{}", out.output))
            });
        self.vm.write_file(
            "/i2c/pkcs11-se050.toml",
            &format!(
                "# the production path: the chip on an I2C bus\n\
                 transport = \"i2c\"\n\
                 i2c_device = \"{bus}\"\n\
                 i2c_address = 0x48\n"
            ),
        );
        *self.bus.lock().unwrap_or_else(|p| p.into_inner()) = (adapter, bus);
    }

    /// The virtual SE050's state file (for the same chip reached in-process).
    pub fn state_path(&self) -> std::path::PathBuf {
        self.state_dir.path().join("se050.state")
    }

    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Runs the guest tool with the module and its I2C configuration (`keygen LABEL`, ...).
    pub fn token(&self, args: &str, timeout: Duration) -> GuestOutput {
        self.vm.run_with_timeout(
            &format!(
                "E2E_MODULE=/i2c/libpkcs11_se050.so PKCS11_SE050_CONF=/i2c/pkcs11-se050.toml \
                 PKCS11_SE050_LOG=warn /i2c/e2e-i2c-guest {args}"
            ),
            timeout,
        )
    }

    /// Panics with `message`, the gadget's log and the guest kernel's last messages (USB and
    /// i2c-tiny-usb errors land there), and the console.
    pub fn fail(&self, message: &str) -> ! {
        let diagnostics = self
            .vm
            .run("echo '--- the gadget:'; cat /tmp/gadget.log; echo '--- dmesg:'; dmesg | tail -40")
            .output;
        self.vm.fail(&format!("{message}\n{diagnostics}"))
    }

    /// Empties the kernel's trace buffer (the i2c tracepoints stay enabled).
    pub fn clear_trace(&self) {
        self.vm.run_ok("echo > /sys/kernel/tracing/trace");
    }

    /// The i2c tracepoints' lines since the last `clear_trace` (i2c_write, i2c_read,
    /// i2c_reply, i2c_result).
    pub fn trace(&self) -> String {
        self.vm
            .run_ok("grep -E 'i2c_(write|read|reply|result):' /sys/kernel/tracing/trace || true")
    }
}

/// The extra initramfs: the guest tool and the module (with their libraries), and the kernel
/// modules of the USB I2C adapter under /i2c/modules.
fn guest_files(kernel: &KernelPackage, tool: &Path) -> Vec<u8> {
    let mut cpio = Cpio::new();
    cpio.add_directory("/i2c");
    cpio.add_file("/i2c/e2e-i2c-guest", read(tool), 0o755);
    add_with_libraries(&mut cpio, tool);
    let module = module_path();
    add_with_libraries(&mut cpio, &module);
    cpio.add_file("/i2c/libpkcs11_se050.so", read(&module), 0o755);
    let modules = load_order(&kernel.modules_dep(), EXTRA_CACHED_MODULES);
    let list: Vec<String> = modules
        .iter()
        .map(|m| format!("/i2c/modules/{m}"))
        .collect();
    for module in &modules {
        cpio.add_file(
            &format!("/i2c/modules/{module}"),
            read(&kernel.dir.join(module)),
            0o644,
        );
    }
    cpio.add_file(
        "/i2c/modules.list",
        (list.join("\n") + "\n").into_bytes(),
        0o644,
    );
    cpio.to_bytes()
}

/// Loads the USB and I2C modules and mounts gadgetfs and tracefs (i2c tracepoints on).
fn setup_script() -> String {
    let wanted = EXTRA_CACHED_MODULES.join(" ");
    format!(
        r#"set -u
# The gadget's real-time priority keeps gadgetfs from losing a write only on one CPU (see
# tests/i2c_guest_tool/gadget.rs, run_first).
[ "$(nproc)" = 1 ] || {{ echo "the guest has $(nproc) CPUs: the USB gadget needs exactly one"; exit 1; }}
# Some dependencies may be loaded already (the VM's own modules): insmod's "File exists".
# usbcore without autosuspend: an adapter idle for 2 s would otherwise be suspended, which
# gadgetfs reports to its program as a disconnect.
while read -r m; do
    case "$m" in
        */usbcore.ko) insmod "$m" autosuspend=-1 2>/dev/null || true ;;
        *) insmod "$m" 2>/dev/null || true ;;
    esac
done < /i2c/modules.list
for n in {wanted}; do
    grep -q "^$n " /proc/modules || {{ echo "module $n did not load:"; dmesg | tail -20; exit 1; }}
done
[ "$(cat /sys/module/usbcore/parameters/autosuspend)" = -1 ] || {{ echo 'usbcore autosuspends'; exit 1; }}
mkdir -p /dev/gadget /run/lock
mount -t gadgetfs gadgetfs /dev/gadget || {{ echo 'cannot mount gadgetfs'; exit 1; }}
mount -t tracefs tracefs /sys/kernel/tracing || {{ echo 'cannot mount tracefs'; exit 1; }}
echo 1 > /sys/kernel/tracing/events/i2c/enable || {{ echo 'no i2c tracepoints'; exit 1; }}
"#
    )
}

/// Stops the gadget if one runs (its USB device and I2C bus go), starts it as `adapter`, and
/// waits for the adapter's I2C bus; prints `bus i2c-N`.
fn start_gadget_script(adapter: Adapter, relay_address: &str) -> String {
    format!(
        r#"set -u
if [ -f /tmp/gadget.pid ]; then
    kill "$(cat /tmp/gadget.pid)" 2>/dev/null
    i=0
    while grep -qs . /sys/class/i2c-adapter/*/name && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
fi
/i2c/e2e-i2c-guest gadget {gadget} {relay_address} > /tmp/gadget.log 2>&1 &
echo $! > /tmp/gadget.pid
i=0
while [ $i -lt {tenths} ]; do
    for a in /sys/class/i2c-adapter/i2c-*; do
        if [ -e "$a/name" ] && grep -q "^{name}" "$a/name"; then
            echo "bus ${{a##*/}}"
            cat "$a/name"
            exit 0
        fi
    done
    sleep 0.1
    i=$((i + 1))
done
echo "no {name} adapter appeared; the gadget said:"
cat /tmp/gadget.log
dmesg | tail -40
exit 1
"#,
        gadget = adapter.gadget_name(),
        name = adapter.adapter_name(),
        tenths = ADAPTER_TIMEOUT_S * 10
    )
}
