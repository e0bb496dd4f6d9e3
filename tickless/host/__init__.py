"""The real-time host backend: host clock reads, timerfd, the host timer thread, real-time
scheduling and CPU accounting. Everything that touches the host OS's time lives here."""
