# Hermitage P4, lost update: both read a value, both write it back changed.
put - test/1 10
put - test/2 20
begin T1
begin T2
get T1 test/1
get T2 test/1
put T1 test/1 11
commit T1
put T2 test/1 11    # read committed: T1 is done, the write goes through
commit T2           # read committed: commits, and T1's update is lost
get - test/1
