#!/usr/bin/env bash
# generate.sh: regenerates the Go stubs of the contract (proto/resilient_circuit/v1) into
# circuitv1/, or into $1 when given (the freshness test compares a fresh copy with the
# committed one). `generate.sh --plugins-only` only installs the pinned plugins.
#
# protoc is Debian's protobuf-compiler (./run-tests installs it). The two plugins are
# installed at the pinned versions below into client/go/.bin, never ~/go/bin, so that what
# generates the committed code is explicit and the same on every machine. The .proto files
# name no go_package: the M flags map each file to the Go package here, so the contract
# stays free of language-specific options.
set -euo pipefail
cd "$(dirname "$0")"

PROTOC_GEN_GO=v1.36.12     # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC=v1.5.1  # google.golang.org/grpc/cmd/protoc-gen-go-grpc
MODULE=example.invalid/resilient-circuit/client/go
PACKAGE=$MODULE/circuitv1

plugins_only=false
out=.
case "${1:-}" in
    --plugins-only) plugins_only=true ;;
    "") ;;
    *) out=$1 ;;
esac
bin=$PWD/.bin
install_plugin() { # name module version
    if [ ! -x "$bin/$1" ] || [ "$(cat "$bin/$1.version" 2>/dev/null)" != "$3" ]; then
        GOBIN=$bin go install "$2@$3"
        echo "$3" >"$bin/$1.version"
    fi
}
mkdir -p "$bin"
install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC"
if $plugins_only; then
    exit 0
fi

files=(resilient_circuit/v1/types.proto resilient_circuit/v1/protector.proto resilient_circuit/v1/admin.proto)
maps=()
for f in "${files[@]}"; do maps+=("M$f=$PACKAGE"); done
go_opts=("--go_opt=module=$MODULE")
grpc_opts=("--go-grpc_opt=module=$MODULE")
for m in "${maps[@]}"; do go_opts+=("--go_opt=$m"); grpc_opts+=("--go-grpc_opt=$m"); done

mkdir -p "$out/circuitv1"
PATH=$bin:$PATH protoc -I ../../proto \
    --go_out="$out" "${go_opts[@]}" \
    --go-grpc_out="$out" "${grpc_opts[@]}" \
    "${files[@]}"
