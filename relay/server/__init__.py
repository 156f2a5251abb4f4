"""The HTTP side: the aiohttp app factory, its handlers, and the calls it keeps."""
