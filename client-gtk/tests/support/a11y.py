#!/usr/bin/python3
"""Drives the desktop client through its accessibility tree (AT-SPI), as a
screen reader or dogtail would: controls are found by their accessible
names, which the tests so also check.

    a11y.py click NAME [ROLE]     press a button (or toggle a check box)
    a11y.py text NAME VALUE       type VALUE into the text field NAME
    a11y.py choose ROW ITEM       open the combo row ROW and pick ITEM
    a11y.py wait NAME [ROLE]      wait until NAME shows
    a11y.py gone NAME [ROLE]      wait until NAME no longer shows
    a11y.py dump                  print the tree

NAME matches an accessible name (mnemonic underlines removed) that holds
it as whole words: "Connect" finds "Connect", not "Disconnect". Waits up to A11Y_TIMEOUT seconds (default 15).
"""
import os
import re
import subprocess
import sys
import time

import pyatspi

TIMEOUT = float(os.environ.get("A11Y_TIMEOUT", "15"))
APP = os.environ.get("A11Y_APP", "switchboard-gtk")


def name_of(acc):
    try:
        return (acc.name or "").replace("_", "")
    except Exception:
        return ""


def role_of(acc):
    try:
        return acc.getRoleName()
    except Exception:
        return ""


def showing(acc):
    """Visible, with its ancestors, and given room on the screen (GTK 4.8
    does not report SHOWING; a hidden stack page has no size)."""
    try:
        if not acc.getState().contains(pyatspi.STATE_VISIBLE):
            return False
        ext = acc.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        return ext.width > 0 and ext.height > 0
    except Exception:
        return True


def matches(name, wanted):
    return re.search(r"(^|\s)" + re.escape(wanted) + r"($|\s)", name) is not None


def walk(acc, depth=0):
    yield acc, depth
    try:
        n = acc.childCount
    except Exception:
        return
    for i in range(n):
        try:
            child = acc.getChildAtIndex(i)
        except Exception:
            continue
        if child is not None:
            yield from walk(child, depth + 1)


def apps():
    """The client's windows, the newest first: a dialog or preferences
    window is searched before the main window behind it."""
    desk = pyatspi.Registry.getDesktop(0)
    for i in range(desk.childCount):
        try:
            a = desk.getChildAtIndex(i)
        except Exception:
            continue
        if a is not None and a.name == APP:
            frames = []
            for k in range(a.childCount):
                try:
                    frames.append(a.getChildAtIndex(k))
                except Exception:
                    pass
            yield from reversed([f for f in frames if f is not None])


def menu_item(name):
    """The list item of an open menu whose label is `name`."""
    for app in apps():
        for acc, _ in walk(app):
            if role_of(acc) == "label" and name_of(acc) == name and showing(acc):
                p = acc.parent
                while p is not None and role_of(p) != "list item":
                    p = p.parent
                if p is not None and role_of(p.parent) == "list":
                    return p
    return None


def find(name, role=None, visible=True):
    for app in apps():
        for acc, _ in walk(app):
            if matches(name_of(acc), name) and (role is None or role_of(acc) == role):
                if not visible or showing(acc):
                    return acc
    return None


def wait_for(name, role=None):
    deadline = time.time() + TIMEOUT
    while True:
        acc = find(name, role)
        if acc is not None:
            return acc
        if time.time() > deadline:
            sys.exit(f"a11y: no {role or 'control'} named {name!r} showing")
        time.sleep(0.1)


def pointer_click(acc):
    """A real click of the pointer in the middle of the control (xdotool;
    the window sits at the screen's origin under Xvfb, with no window
    manager)."""
    ext = acc.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
    x, y = ext.x + ext.width // 2, ext.y + ext.height // 2
    subprocess.run(["xdotool", "mousemove", "--sync", str(x), str(y), "click", "1"], check=True)


def checked(acc):
    try:
        return acc.getState().contains(pyatspi.STATE_CHECKED)
    except Exception:
        return None


def press(acc):
    try:
        action = acc.queryAction()
        names = [action.getName(i) for i in range(action.nActions)]
    except Exception:
        names = []
    for wanted in ("click", "press", "activate", "toggle"):
        if wanted in names:
            action.doAction(names.index(wanted))
            return
    # Rows and menus without an action: the pointer, as a person would.
    pointer_click(acc)


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "dump"
    if cmd == "dump":
        for app in apps():
            for acc, depth in walk(app):
                if showing(acc) or depth < 2:
                    print("  " * depth + f"{role_of(acc)}: {name_of(acc)!r}")
    elif cmd == "click":
        press(wait_for(argv[2], argv[3] if len(argv) > 3 else None))
    elif cmd == "text":
        acc = wait_for(argv[2], "text")
        acc.queryEditableText().setTextContents(argv[3])
    elif cmd == "choose":
        pointer_click(wait_for(argv[2]))
        # The menu opens in a popover, its items in a list; the keyboard
        # picks one (Home, Down to it, Return), as a person may.
        deadline = time.time() + TIMEOUT
        while True:
            item = menu_item(argv[3])
            if item is not None:
                index = item.getIndexInParent()
                keys = ["Home"] + ["Down"] * index + ["Return"]
                subprocess.run(["xdotool", "key", "--delay", "60", *keys], check=True)
                return
            if time.time() > deadline:
                sys.exit(f"a11y: no item {argv[3]!r} in {argv[2]!r}")
            time.sleep(0.1)
    elif cmd == "wait":
        wait_for(argv[2], argv[3] if len(argv) > 3 else None)
    elif cmd == "gone":
        deadline = time.time() + TIMEOUT
        while find(argv[2], argv[3] if len(argv) > 3 else None) is not None:
            if time.time() > deadline:
                sys.exit(f"a11y: {argv[2]!r} still shows")
            time.sleep(0.1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
