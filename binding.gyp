{
  "targets": [
    {
      "target_name": "pnet_routing",
      "sources": [
        "native/src/addon.cc",
        "native/src/table.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O3",
        "-fvisibility=hidden"
      ],
      "cflags_cc!": [
        "-std=gnu++1y",
        "-std=gnu++17",
        "-std=gnu++20"
      ],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "MACOSX_DEPLOYMENT_TARGET": "10.15"
      },
      "msvs_settings": {
        "VCCLCompilerTool": {
          "AdditionalOptions": [
            "/std:c++17"
          ]
        }
      }
    },
    {
      "target_name": "pnet_udp",
      "sources": [
        "native/src/udp.cc",
        "native/src/reexec.cc",
        "native/src/malloc.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "PNET_HAVE_UV"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O3",
        "-fvisibility=hidden"
      ],
      "cflags_cc!": [
        "-std=gnu++1y",
        "-std=gnu++17",
        "-std=gnu++20"
      ],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "MACOSX_DEPLOYMENT_TARGET": "10.15"
      },
      "msvs_settings": {
        "VCCLCompilerTool": {
          "AdditionalOptions": [
            "/std:c++17"
          ]
        }
      },
      "product_dir": "<(PRODUCT_DIR)/udp"
    }
  ]
}
