# Hermitage P4, lost update, at serializable: both read a value, both write it back changed.
# T1's commit changes what T2 read, so T2's write is refused and T2 cannot commit.
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
get T1 test/1
get T2 test/1
put T1 test/1 11
commit T1           # changes test/1, which T2 read: T2 is doomed
put T2 test/1 11    # refused: T2 read a value that has changed since
commit T2           # votes no: aborted; T1's update stays
get - test/1
