"""The contract's four workflows as prompts: each hands the assistant the right tool calls in
order, filled in with what the user gave."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

if TYPE_CHECKING:
    from webhook_mcp.interfaces.mcp.server import WebhookServer

TRY_WITHOUT_RECEIVER = (
    "No receiver yet? open_inbox gives a URL on this server that records what arrives; read_inbox "
    "shows it with the signature checked."
)


def register(server: WebhookServer) -> None:
    @server.prompt(title="Set up a webhook", description="Register an endpoint, hand it its secret, prove it works.")
    def setup_webhook(
        url: Annotated[str, Field(description="The endpoint's URL; empty to use a built-in inbox.")] = "",
        events: Annotated[str, Field(description="Comma-separated event types, e.g. order.created.")] = "",
    ) -> str:
        where = f"the endpoint {url}" if url else "an inbox (open_inbox) as the endpoint"
        what = f"the events {events}" if events else "the events the user needs (get_webhook_events lists them)"
        return (
            f"Set up a webhook to {where} for {what}.\n"
            "1. get_webhook_events; check the names, and get_webhook_sample_payload shows what each sends.\n"
            "2. create_webhook with the url and events.\n"
            "3. get_webhook_secret: give the secret to the receiver so it verifies signatures.\n"
            "4. test_webhook; if it fails, explain the error in words and what to fix.\n"
            "5. get_webhook_logs to confirm the attempt.\n" + TRY_WITHOUT_RECEIVER
        )

    @server.prompt(title="Debug a failing webhook", description="Find why deliveries fail, fix it, redeliver.")
    def debug_webhook(id: Annotated[str, Field(description="The webhook's id (list_webhooks).")]) -> str:
        return (
            f"Webhook {id} is failing. Find out why and fix it.\n"
            f"1. get_webhook_stats {{id: {id}}}: success rate, failure streak, dead deliveries, next retry.\n"
            f"2. get_webhook_logs {{id: {id}, status: 'failed'}}: read the errors (refused, DNS, timeout, TLS, "
            "HTTP status) and response excerpts.\n"
            "3. Explain the cause; if the URL moved, update_webhook; if it was disabled, toggle_webhook.\n"
            f"4. test_webhook {{id: {id}}} until it succeeds.\n"
            "5. replay_failed (or retry_delivery) to redeliver what died.\n"
            "To rehearse failures: open_inbox with status 500, point a webhook at it, read_inbox to watch retries."
        )

    @server.prompt(title="Test an endpoint", description="Send a signed test event and read the answer.")
    def test_endpoint(
        id: Annotated[str, Field(description="The webhook's id (list_webhooks).")],
        event: Annotated[str, Field(description="Event type to send a sample of; empty for webhook.test.")] = "",
    ) -> str:
        sent = f"{{id: {id}, event: '{event}'}}" if event else f"{{id: {id}}}"
        return (
            f"Test webhook {id}.\n"
            f"1. test_webhook {sent}: report success, status, response time and any error in words.\n"
            "2. On failure, get_webhook_logs shows earlier attempts; suggest the fix at the endpoint.\n"
            "3. get_webhook_sample_payload shows the exact body and headers the endpoint must accept.\n"
            + TRY_WITHOUT_RECEIVER
        )

    @server.prompt(title="Manage subscribed events", description="Change which events a webhook receives.")
    def manage_events(
        id: Annotated[str, Field(description="The webhook's id (list_webhooks).")],
        events: Annotated[str, Field(description="Comma-separated event types wanted; empty to decide.")] = "",
    ) -> str:
        wanted = f"the events {events}" if events else "the events the user asks for"
        return (
            f"Change webhook {id} to receive {wanted}.\n"
            f"1. get_webhook {{id: {id}}} for its current events.\n"
            "2. get_webhook_events to check the names.\n"
            f"3. update_webhook {{id: {id}, events: [...]}} with the WHOLE new list (it replaces the old one).\n"
            f"4. test_webhook {{id: {id}}} with one of the new events to confirm the endpoint handles it."
        )
