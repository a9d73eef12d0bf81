"""MLPerf Power compatibility: LoadGen logs as phases, MLPerf's own figures beside powerd's."""
