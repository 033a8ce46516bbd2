# Another resource manager votes no: the commit fails and nothing is applied (simulator only).
put - k before
begin T1
put T1 k after
put T1 extra 1
veto T1
commit T1
get - k
get - extra
put - k unlocked
get - k
