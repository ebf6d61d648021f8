"""The fault-injection suite (`make faults`): real PostgreSQL, Redis, dramatiq workers, scheduler
processes and the SES emulator, one thing broken at a time, counted against what SES received."""
