"""systemd's system-call groups, as `systemd-analyze syscall-filter` lists
them: what a unit's SystemCallFilter= allows, for the tests that check
traind (test_systemd.py) and mpirun under the MPI drop-ins
(tests/mpi/test_systemd_mpi.py) against it."""
import subprocess


def syscall_groups():
    """{"@group": [entries]} from systemd-analyze syscall-filter."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = line.split()[0]
            groups[cur] = []
        elif cur and line.strip() and not line.strip().startswith("#"):
            groups[cur].append(line.strip())
    return groups


def expand(groups, name, seen=None):
    """The system calls of group `name`, its nested groups included."""
    seen = seen if seen is not None else set()
    out = set()
    for e in groups.get(name, []):
        if e.startswith("@"):
            if e not in seen:
                seen.add(e)
                out |= expand(groups, e, seen)
        else:
            out.add(e)
    return out
