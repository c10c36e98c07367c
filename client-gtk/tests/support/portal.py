"""A fake desktop portal for the GUI tests: python-dbusmock template for
org.freedesktop.portal.GlobalShortcuts (Debian 12's portal has none, nor
has Xvfb). Sessions and Request objects are made as the portal makes them;
the test presses and releases a shortcut with

    org.switchboard.MockPortal.Press(s id)    Activated, as a key going down
    org.switchboard.MockPortal.Release(s id)  Deactivated

Start it with: python3 -m dbusmock --template portal.py
"""

import dbus
import dbus.service
from dbusmock import mockobject
from gi.repository import GLib

BUS_NAME = "org.freedesktop.portal.Desktop"
MAIN_OBJ = "/org/freedesktop/portal/desktop"
MAIN_IFACE = "org.freedesktop.portal.GlobalShortcuts"
MOCK_IFACE = "org.switchboard.MockPortal"
REQUEST_IFACE = "org.freedesktop.portal.Request"
SESSION_IFACE = "org.freedesktop.portal.Session"
SYSTEM_BUS = False

SESSIONS = []
BOUND = {}


def load(mock, parameters):
    mock.AddProperties(MAIN_IFACE, {"version": dbus.UInt32(1, variant_level=1)})


def sender_path(kind, sender, token):
    name = sender.lstrip(":").replace(".", "_")
    return f"/org/freedesktop/portal/desktop/{kind}/{name}/{token}"


def respond(self, path, results):
    """Makes the Request object and answers on it, after the call returned."""
    self.AddObject(path, REQUEST_IFACE, {}, [("Close", "", "", "")])

    def emit():
        mockobject.objects[path].EmitSignal(
            REQUEST_IFACE, "Response", "ua{sv}", [dbus.UInt32(0), results]
        )
        return False

    GLib.timeout_add(20, emit)


@dbus.service.method(MAIN_IFACE, in_signature="a{sv}", out_signature="o", sender_keyword="sender")
def CreateSession(self, options, sender=None):
    request = sender_path("request", sender, options["handle_token"])
    session = sender_path("session", sender, options["session_handle_token"])
    self.AddObject(session, SESSION_IFACE, {}, [("Close", "", "", "")])
    SESSIONS.append(session)
    respond(self, request, {"session_handle": dbus.String(session, variant_level=1)})
    return dbus.ObjectPath(request)


@dbus.service.method(
    MAIN_IFACE, in_signature="oa(sa{sv})sa{sv}", out_signature="o", sender_keyword="sender"
)
def BindShortcuts(self, session, shortcuts, parent_window, options, sender=None):
    request = sender_path("request", sender, options["handle_token"])
    bound = []
    for sid, info in shortcuts:
        trigger = str(info.get("preferred_trigger", "")) or "unset"
        BOUND[str(sid)] = (str(session), trigger)
        bound.append(
            dbus.Struct(
                (
                    dbus.String(sid),
                    dbus.Dictionary(
                        {
                            "description": dbus.String(info.get("description", ""), variant_level=1),
                            "trigger_description": dbus.String(trigger, variant_level=1),
                        },
                        signature="sv",
                    ),
                ),
                signature="sa{sv}",
            )
        )
    respond(self, request, {"shortcuts": dbus.Array(bound, signature="(sa{sv})", variant_level=1)})
    return dbus.ObjectPath(request)


def shortcut_signal(self, name, sid):
    session, _ = BOUND[sid]
    self.EmitSignal(
        MAIN_IFACE,
        name,
        "osta{sv}",
        [dbus.ObjectPath(session), dbus.String(sid), dbus.UInt64(GLib.get_monotonic_time() // 1000), dbus.Dictionary({}, signature="sv")],
    )


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="s")
def Press(self, sid):
    """Returns the shortcut's trigger, "" for one not bound (no signal)."""
    if sid not in BOUND:
        return ""
    shortcut_signal(self, "Activated", sid)
    return BOUND[sid][1]


@dbus.service.method(MOCK_IFACE, in_signature="s", out_signature="")
def Release(self, sid):
    shortcut_signal(self, "Deactivated", sid)
