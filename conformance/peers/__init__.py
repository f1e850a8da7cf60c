"""The parties the harness plays around an implementation under test: a manager and its channel,
SNMP and mail relays, an HTTP proxy, a TLS tap, a throw-away PKI, a TUF feed, scripted answers."""
