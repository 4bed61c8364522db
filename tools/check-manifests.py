#!/usr/bin/env python3
"""Checks the workspace's packaging conventions from `cargo metadata`: every crate declares the workspace's
rust-version (so cargo refuses older compilers and clippy's incompatible_msrv lint checks std APIs against it)
and its licence, whose files exist at the root; a crate not marked `publish = false` carries what crates.io
needs (description, repository) and depends on its workspace siblings with a version. Run by .ci/run."""
import json
import os
import subprocess
import sys

meta = json.loads(subprocess.check_output(["cargo", "metadata", "--no-deps", "--format-version", "1"]))
root = meta["workspace_root"]
problems = []
for licence_file in ("LICENSE-MIT", "LICENSE-APACHE"):
    if not os.path.isfile(os.path.join(root, licence_file)):
        problems.append(f"{licence_file} is missing at the workspace root")
members = {p["name"] for p in meta["packages"]}
for package in meta["packages"]:
    name = package["name"]
    if not package.get("rust_version"):
        problems.append(f"{name}: no rust-version (add `rust-version.workspace = true`)")
    if package.get("license") != "MIT OR Apache-2.0":
        problems.append(f"{name}: license is {package.get('license')!r}, not the workspace's MIT OR Apache-2.0")
    if package.get("publish") == []:
        continue
    for field in ("description", "repository"):
        if not package.get(field):
            problems.append(f"{name} is publishable but has no {field} (or mark it `publish = false`)")
    for dep in package["dependencies"]:
        if dep["name"] in members and dep.get("req") in (None, "*"):
            problems.append(f"{name} is publishable but depends on {dep['name']} without a version")
for problem in problems:
    print(problem, file=sys.stderr)
print(f"{len(meta['packages'])} crates checked, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
