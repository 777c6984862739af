#!/usr/bin/env bash
# The MCP Inspector CLI drives `webhook-mcp serve` over stdio: lists and reads the resources and
# prompts, calls a tool; completions of prompt arguments and template variables are checked with
# the TypeScript SDK the Inspector is built on (its CLI has no one-shot completion method).
# Needs node and the npm registry: the Inspector is installed once into $INSPECTOR_HOME.
#
#   scripts/inspector_check.sh
#   INSPECTOR_HOME=/tmp/inspector scripts/inspector_check.sh
#
# Each step prints what the Inspector answered (shortened) and checks one thing in it; the script
# stops at the first step that does not hold. A scratch SQLite database is made and removed.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
server="${WEBHOOK_MCP:-$here/.venv/bin/webhook-mcp}"
home="${INSPECTOR_HOME:-$HOME/.cache/webhook-mcp-inspector}"
if [ ! -x "$home/node_modules/.bin/mcp-inspector" ]; then
    npm install --silent --prefix "$home" @modelcontextprotocol/inspector@latest
fi
inspector="$home/node_modules/.bin/mcp-inspector"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

inspect() {  # inspect <what to find in the answer> <inspector options...>
    local expected="$1"
    shift
    local answer
    answer="$($inspector --cli -e "WEBHOOK_MCP_DATABASE_URL=sqlite:///$scratch/webhooks.db" \
        -e WEBHOOK_MCP_LOG_LEVEL=WARNING "$server" serve "$@" 2>"$scratch/stderr")" || {
        cat "$scratch/stderr" >&2
        exit 1
    }
    echo "\$ inspector --cli webhook-mcp serve $*"
    echo "${answer:0:400}" | tr -s ' \n' ' '
    echo
    if ! grep -qF -- "$expected" <<<"$answer"; then
        echo "FAILED: expected to find: $expected" >&2
        exit 1
    fi
    echo "ok: found $expected"
    echo
}

inspect '"name": "read_inbox"' --method tools/list
inspect '"id": 1' --method tools/call --tool-name create_webhook \
    --tool-args-json '{"url": "https://hooks.example.com/shop", "events": ["order.created"]}'
inspect 'webhooks://webhooks/1' --method resources/list
inspect 'webhooks://event-types/{name}' --method resources/templates/list
inspect 'webhook-signature' --method resources/read --uri webhooks://event-types/order.created
inspect 'recent_failures' --method resources/read --uri webhooks://webhooks/1
inspect '"name": "debug_webhook"' --method prompts/list
inspect 'get_webhook_stats' --method prompts/get --prompt-name debug_webhook --prompt-args id=1
cp "$here/scripts/complete_check.mjs" "$home/complete_check.mjs"  # resolves the SDK from there
node "$home/complete_check.mjs" "$server" "sqlite:///$scratch/webhooks.db"
echo "all Inspector checks passed"
