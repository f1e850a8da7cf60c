"""MeterSync reference agent (import name `metersync_agent`): SNMP polling, outbox, transports."""
