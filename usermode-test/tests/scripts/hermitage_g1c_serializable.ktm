# Hermitage G1c, circular information flow, at serializable: neither sees the other's
# uncommitted write, and beyond read committed the pair cannot both commit (each read a key the
# other wrote: no serial order explains both reads).
put - test/1 10
put - test/2 20
begin T1 serializable
begin T2 serializable
put T1 test/1 11
put T2 test/2 22
get T1 test/2       # 20, not T2's 22
get T2 test/1       # 10, not T1's 11
commit T1           # changes test/1, which T2 read: T2 is doomed
commit T2           # votes no: aborted
