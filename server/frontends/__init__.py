"""Wire formats over the one engine: each package decodes its protocol, makes one engine
call and encodes the answer — nothing else. A new protocol is one more package here."""
