"""Wire codecs: the dtype table and the V2 JSON/binary request and response formats."""
