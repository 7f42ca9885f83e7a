"""`segue-fleet`: provision a fleet of segue devices (registry, credentials, broker ACLs, claim
enrollment, Home Assistant discovery). Run `segue-fleet --home DIR VERB --help` for each verb."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .fleet import SERVICE_ROLES, Fleet, FleetError
from .registry import iter_rows
from .settings import DEFAULT_TOPIC_ROOT, BrokerSettings


def _ts(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_broker_user() -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("mosquitto")
        return "mosquitto"
    except KeyError:
        return "root"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segue-fleet",
        description="Provision segue devices: per-device credentials, Mosquitto ACLs, claim enrollment, monitoring.",
        epilog="Typical order: init, broker-config, enroll (or allow + serve), export. See docs/fleet.md.",
    )
    p.add_argument("--home", type=Path, default=Path(os.environ.get("SEGUE_FLEET_HOME", "fleet")),
                   help="fleet home directory (registry, CA, secrets); default $SEGUE_FLEET_HOME or ./fleet")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("init", help="create the fleet home: registry, fleet CA, service credentials",
                       description="Create the fleet home (mode 0700): SQLite registry, fleet CA, and the "
                       "engine, fleet-service (broker admin), monitor and factory-claim credentials.")
    s.add_argument("--topic-root", default=DEFAULT_TOPIC_ROOT, help="topic root (default %(default)s)")

    s = sub.add_parser("enroll", help="enroll one device, or many from a CSV (idempotent)",
                       description="Give a device its own credential: a random password, or with --cert a "
                       "client certificate signed by the fleet CA (CN = device id). Enrolling an enrolled "
                       "device changes nothing. Applies to the running broker at once.")
    s.add_argument("device_id", nargs="?", help="device id (^[a-z0-9][a-z0-9_-]{0,62}$)")
    s.add_argument("--csv", type=Path, help="CSV of `device_id[,password|cert]` rows (a header row is skipped)")
    s.add_argument("--cert", action="store_true", help="use a TLS client certificate instead of a password")

    sub.add_parser("list", help="list devices (state, enrolled, last seen)",
                   description="One line per device: id, state (active, revoked; +rotating while two credentials "
                   "are valid), auth (password or cert), enrolled and last-seen times (UTC), last status.")
    s = sub.add_parser("show", help="show one device (never a secret)", description="Show one device's record.")
    s.add_argument("device_id")

    s = sub.add_parser("revoke", help="revoke a device: cut it off the running broker within seconds",
                       description="Disable all of the device's credentials, rewrite the broker's password/"
                       "ACL/CRL files, SIGHUP the broker (password sessions are dropped) and take over "
                       "the device's client id (certificate sessions are dropped).")
    s.add_argument("device_id")

    s = sub.add_parser("rotate", help="issue a new credential (old stays valid until --confirm)",
                       description="Without --confirm: add a new credential; both old and new work "
                       "(export the device again to get it). With --confirm: retire the old one.")
    s.add_argument("device_id")
    s.add_argument("--confirm", action="store_true", help="end the overlap: disable the old credential")

    s = sub.add_parser("broker-config", help="write a complete Mosquitto 2.0 configuration",
                       description="Write mosquitto.conf, passwd, acl (and TLS files) to --out; run it with "
                       "`mosquitto -c OUT/mosquitto.conf`. Later enroll/revoke/rotate rewrite passwd/acl/"
                       "crl there and SIGHUP the broker via OUT/mosquitto.pid.")
    s.add_argument("--port", type=int, required=True, help="password listener port (e.g. 1883)")
    s.add_argument("--tls-port", type=int, help="TLS listener port requiring a fleet client certificate (e.g. 8883)")
    s.add_argument("--out", type=Path, required=True, help="directory for the broker files")
    s.add_argument("--bind", default="0.0.0.0", help="listen address (default %(default)s)")
    s.add_argument("--public-host", default="localhost",
                   help="host name devices use to reach the broker (bundles; TLS certificate) (default %(default)s)")
    s.add_argument("--server-name", action="append", default=[],
                   help="extra DNS name/IP for the broker certificate (repeatable)")
    s.add_argument("--broker-user", default=_default_broker_user(),
                   help="`user` line: the account Mosquitto drops to when started as root; files are "
                   "chowned to it (default: mosquitto when run as root, none otherwise)")

    s = sub.add_parser("export", help="write a device's config bundle (TOML)",
                       description="Write the device bundle ([mqtt] host, port, username, password or ca/"
                       "cert/key, client_id, topic_root; [device] id), mode 0600. Certificate devices "
                       "also get OUT-stem.ca.pem/.cert.pem/.key.pem beside it.")
    s.add_argument("device_id")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--host", help="override the broker host")
    s.add_argument("--port", type=int, help="override the broker port")
    s.add_argument("--install-dir", type=Path, help="directory the PEM files will live in on the device")

    s = sub.add_parser("export-server", help="write a service's bundle (engine by default)",
                       description="Write the [mqtt] bundle of a service credential: engine (segue-server), "
                       "monitor (Home Assistant / MQTT Explorer), fleet (serve), claim (factory image).")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--role", choices=sorted(SERVICE_ROLES), default="engine", help="default %(default)s")
    s.add_argument("--host", help="override the broker host")
    s.add_argument("--port", type=int, help="override the broker port")

    s = sub.add_parser("allow", help="allow-list serials for claim enrollment",
                       description="Add factory serials (SERIAL or SERIAL=DEVICE_ID; the id defaults to the "
                       "serial in lower case). --reset lets an enrolled serial claim again (revokes its device).")
    s.add_argument("serials", nargs="*", metavar="SERIAL[=DEVICE_ID]")
    s.add_argument("--csv", type=Path, help="CSV of `serial[,device_id]` rows")
    s.add_argument("--reset", action="store_true", help="re-arm the given serials for a new claim")

    s = sub.add_parser("serve", help="run the enrollment service and the Home Assistant discovery publisher",
                       description="Answer claim requests on <root>/claim/<serial>/request, publish Home "
                       "Assistant device discovery (retained; again when homeassistant/status is online), "
                       "track last-seen from <root>/<id>/status. Stops on SIGINT/SIGTERM.")
    s.add_argument("--host", default=None, help="broker host (default: from broker-config, 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="broker port (default: from broker-config)")
    s.add_argument("--sync-interval", type=float, default=5.0, help="seconds between registry syncs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (FleetError, ValueError, FileNotFoundError) as e:
        print(f"segue-fleet: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    home: Path = args.home
    if args.verb == "init":
        Fleet.init(home, args.topic_root).close()
        print(f"fleet created at {home}")
        return 0
    fleet = Fleet(home)
    try:
        return VERBS[args.verb](fleet, args)
    finally:
        fleet.close()


def _enroll(fleet: Fleet, args: argparse.Namespace) -> int:
    if args.csv:
        bad = 0
        for device_id, result in fleet.enroll_csv(args.csv, cert=args.cert):
            print(f"{device_id}\t{result}")
            bad += result.startswith("error")
        return 1 if bad else 0
    if not args.device_id:
        raise FleetError("give a DEVICE_ID or --csv FILE")
    created = fleet.enroll(args.device_id, cert=args.cert)
    print(f"{args.device_id}\t{'created' if created else 'exists'}")
    return 0


def _list(fleet: Fleet, _args: argparse.Namespace) -> int:
    print("id\tstate\tauth\tenrolled\tlast_seen\tstatus")
    for v in fleet.views():
        d = v.device
        state = d.state + ("+rotating" if v.rotation_pending else "")
        print(f"{d.id}\t{state}\t{d.auth}\t{_ts(d.enrolled_at)}\t{_ts(d.last_seen)}\t{d.last_status or '-'}")
    return 0


def _show(fleet: Fleet, args: argparse.Namespace) -> int:
    v = fleet.view(args.device_id)
    d = v.device
    for k, val in (("id", d.id), ("state", d.state), ("auth", d.auth), ("source", d.source),
                   ("serial", d.serial or "-"), ("enrolled", _ts(d.enrolled_at)), ("revoked", _ts(d.revoked_at)),
                   ("last_seen", _ts(d.last_seen)), ("last_status", d.last_status or "-"),
                   ("usernames", ", ".join(v.usernames) or "-"), ("rotation_pending", str(v.rotation_pending).lower())):
        print(f"{k}: {val}")
    return 0


def _revoke(fleet: Fleet, args: argparse.Namespace) -> int:
    r = fleet.revoke(args.device_id)
    note = "broker reloaded" if r["reloaded"] else "no running broker found (files rewritten)"
    print(f"{args.device_id}\trevoked; {note}")
    return 0


def _rotate(fleet: Fleet, args: argparse.Namespace) -> int:
    if args.confirm:
        n = fleet.confirm_rotation(args.device_id)
        print(f"{args.device_id}\t{n} old credential(s) disabled")
    else:
        cred = fleet.rotate(args.device_id)
        print(f"{args.device_id}\tnew credential generation {cred.generation} ({cred.username}); "
              f"export the device again, then `rotate {args.device_id} --confirm`")
    return 0


def _broker_config(fleet: Fleet, args: argparse.Namespace) -> int:
    names = tuple(dict.fromkeys([args.public_host, "localhost", "127.0.0.1", *args.server_name]))
    s = fleet.broker_config(BrokerSettings(
        out_dir=args.out.resolve(), port=args.port, tls_port=args.tls_port, bind=args.bind,
        public_host=args.public_host, server_names=names, broker_user=args.broker_user))
    print(f"wrote {s.conf}; run: mosquitto -c {s.conf}")
    return 0


def _export(fleet: Fleet, args: argparse.Namespace) -> int:
    fleet.device_bundle(args.device_id, args.out, host=args.host, port=args.port, install_dir=args.install_dir)
    print(f"wrote {args.out} (mode 0600)")
    return 0


def _export_server(fleet: Fleet, args: argparse.Namespace) -> int:
    fleet.service_bundle(args.role, args.out, host=args.host, port=args.port)
    print(f"wrote {args.out} (mode 0600)")
    return 0


def _allow(fleet: Fleet, args: argparse.Namespace) -> int:
    pairs: list[tuple[str, str | None]] = []
    for item in args.serials:
        serial, _, dev = item.partition("=")
        pairs.append((serial, dev or None))
    if args.csv:
        pairs += [(row[0], row[1] if len(row) > 1 and row[1] else None) for row in iter_rows(args.csv)]
    if not pairs:
        raise FleetError("give SERIAL... or --csv FILE")
    for serial, dev in pairs:
        if args.reset:
            fleet.reset_claim(serial)
            print(f"{serial}\treset")
        else:
            print(f"{serial}\t{'added' if fleet.allow(serial, dev) else 'listed'}")
    return 0


def _serve(fleet: Fleet, args: argparse.Namespace) -> int:
    from .service import FleetService, ServeSettings

    s = fleet.broker_settings()
    host = args.host or "127.0.0.1"
    port = args.port or (s.port if s else 1883)
    service = FleetService(fleet, ServeSettings(host=host, port=port, sync_interval=args.sync_interval))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("segue.fleet").info("serving on %s:%d as %s", host, port, getpass.getuser())
    service.run(stop)
    return 0


VERBS = {
    "enroll": _enroll, "list": _list, "show": _show, "revoke": _revoke, "rotate": _rotate,
    "broker-config": _broker_config, "export": _export, "export-server": _export_server,
    "allow": _allow, "serve": _serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
