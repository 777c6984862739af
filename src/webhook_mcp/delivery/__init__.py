"""Delivery: the dispatcher, the sender and its HTTP/1.1 client, the address guard, the retry policy."""
