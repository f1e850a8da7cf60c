"""MeterSync reference agent: SNMP polling, outbox and transports (import name `metersync_agent`)."""
