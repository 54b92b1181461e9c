package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

func Example() {
	tk, err := tokenizer.Load("../../models/docbloom-3m/tokenizer.json")
	if err != nil {
		log.Fatal(err)
	}
	enc, err := tk.Encode("Return the number of", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(enc.IDs)
	fmt.Printf("%q\n", enc.Tokens)
	fmt.Println(enc.Offsets)

	// Stream the model's continuation as it is generated.
	d := tk.NewDecoder(true)
	for _, id := range []int32{1309, 293, 272, 544, 17} {
		piece, err := d.Add(id)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q ", piece)
	}
	fmt.Printf("%q\n", d.Flush())
	// Output:
	// [444 272 657 296]
	// ["Return" "Ġthe" "Ġnumber" "Ġof"]
	// [[0 6] [6 10] [10 17] [17 20]]
	// " elements" " in" " the" " input" "." ""
}
