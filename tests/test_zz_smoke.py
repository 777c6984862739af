import pytest
pytestmark = pytest.mark.anyio
from conftest import make_settings
from webhook_mcp import Hub
async def test_smoke(receiver, database_url):
    async with Hub.open(make_settings(database_url)) as hub:
        wh = await hub.service.create_webhook(receiver.url, ["order.created"])
        await hub.publish("order.created", hub.catalog.get("order.created").example)
        got = await receiver.wait_for(1)
        assert got[0].json["type"] == "order.created"
