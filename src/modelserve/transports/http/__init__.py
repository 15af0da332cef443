"""HTTP/1.1 on httptools and the V2 REST API over it."""
