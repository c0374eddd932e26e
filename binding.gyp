{
  "targets": [
    {
      "target_name": "fslock",
      "sources": [
        "native/addon.cc", "native/instance.cc", "native/errors.cc", "native/files.cc",
        "native/locks.cc", "native/fd_cache.cc", "native/waits.cc", "native/registry.cc", "native/marks.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": [
        "NAPI_VERSION=8",
        "FSLOCK_SOURCE_HASH=\"<!(node scripts/source-hash.js)\""
      ],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "conditions": [
        ["OS=='win'", {
          "sources": ["native/platform/win32.cc"],
          "defines": ["WIN32_LEAN_AND_MEAN", "NOMINMAX"]
        }, {
          "sources": [
            "native/platform/posix_calls.cc", "native/platform/posix_waiter.cc",
            "native/platform/posix_registry.cc", "native/platform/posix_tree.cc",
            "native/platform/glibc_floor.cc"
          ],
          "libraries": ["-lpthread"]
        }],
        ["OS=='linux'", {
          # Loadable on glibc 2.28 and its libstdc++ (see native/platform/glibc_floor.h)
          "cflags_cc": ["-include", "<(module_root_dir)/native/platform/glibc_floor.h"],
          "ldflags": ["-Wl,--wrap=_ZSt28__throw_bad_array_new_lengthv"],
          "libraries": ["-Wl,--no-as-needed", "-l:libpthread.so.0", "-Wl,--as-needed"]
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_SYMBOLS_PRIVATE_EXTERN": "YES",
            "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra"]
          }
        }]
      ]
    }
  ]
}
