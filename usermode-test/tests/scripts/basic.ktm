# Non-transacted writes commit at once; absent keys and bad sizes are reported, not fatal.
put - fruit/apple red
put - fruit/banana yellow
put - fruit/cherry dark-red
put - veg/leek green
get - fruit/apple
put - fruit/apple green       # overwrite
get - fruit/apple
list - fruit/
list - veg
list - nothing/
delete - fruit/banana
list - fruit/
get - fruit/banana            # gone
delete - fruit/banana         # twice
list -                        # every key
