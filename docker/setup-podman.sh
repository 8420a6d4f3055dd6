#!/bin/sh
# Podman for the compose cluster on a Debian machine with no docker daemon (what
# `make cluster-engine` runs; as root, or with sudo): Debian's podman, runc, debootstrap
# (for the offline base image) and podman-compose, and an engine configuration these
# machines need: crun, podman's default runtime, refuses their cgroups, and setting
# raised ulimits is not permitted in them. An existing configuration is left alone.
set -eu
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
for tool in podman runc debootstrap podman-compose; do
    if ! command -v "$tool" >/dev/null; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq podman runc debootstrap podman-compose >/dev/null
        break
    fi
done
if [ ! -f /etc/containers/containers.conf ]; then
    $sudo mkdir -p /etc/containers
    printf '%s\n' '[containers]' 'default_ulimits = []' '' '[engine]' 'cgroup_manager = "cgroupfs"' 'runtime = "runc"' \
        | $sudo tee /etc/containers/containers.conf >/dev/null
fi
podman info >/dev/null
echo "podman $(podman version --format '{{.Client.Version}}'), $(podman-compose version 2>/dev/null | grep -i 'composer* version')"
