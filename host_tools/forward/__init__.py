"""Onward delivery of alarms: SIA DC-09 to an alarm receiving centre, and signed webhooks."""
