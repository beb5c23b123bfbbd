{
  "targets": [
    {
      "target_name": "procsock_spawn",
      "sources": ["native/module.c", "native/addon.c", "native/spawn.c", "native/pipe.c", "native/orphanage.c", "native/peercred.c", "native/pty.c", "native/watch.c", "native/cgroup.c", "native/conn.c", "native/hangup.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      "target_name": "procsock_reaper",
      "type": "executable",
      "sources": ["native/reaper.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra"]
    }
  ]
}
